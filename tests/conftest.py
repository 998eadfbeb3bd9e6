import pytest


@pytest.fixture(scope="session")
def smollm2():
    """The real packaged SmolLM2-135M-Instruct through the transformers backend."""
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.registry import resolve

    return TransformersBackend(resolve("smollm2-135m-instruct"))
