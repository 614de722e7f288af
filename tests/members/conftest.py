import pytest
from flask import Flask


@pytest.fixture(autouse=True)
def _in_app(app: Flask) -> None:
    """Domain tests here call operations directly: every test runs in the app context."""
