"""tinyforge: build and curate synthetic training corpora for small language models.

The importable library is ``pipeline``; every stage is plain Python and usable
without Prefect. ``flows/`` wraps these functions in Prefect flows.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tinyforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
