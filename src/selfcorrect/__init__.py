"""selfcorrect: measure whether language models can morally self-correct."""

from selfcorrect.version import __version__

_API = ("benchmarks", "conditions", "models", "report", "run", "score")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    # The Python API lives in selfcorrect.api; imported lazily so `import selfcorrect` stays cheap.
    if name in _API:
        from selfcorrect import api

        return getattr(api, name)
    raise AttributeError(name)
