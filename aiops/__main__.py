"""``python -m aiops`` is the ``aiops`` command."""

import sys

from aiops.cli import main

sys.exit(main())
