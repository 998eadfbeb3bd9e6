"""The installed package version, in a module of its own so that every layer can read it
without importing the package's front door."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("selfcorrect")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"
