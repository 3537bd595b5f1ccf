"""aiops: a streaming AIOps engine for microservice telemetry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiops")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
