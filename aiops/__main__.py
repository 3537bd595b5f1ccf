"""``python -m aiops`` is the ``aiops`` command."""

import sys

from aiops.cli import main

if __name__ == "__main__":
    sys.exit(main())
