"""The version of ifan: the installed distribution's (``pyproject.toml`` holds it)."""

from importlib import metadata

try:
    __version__ = metadata.version("ifan")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
