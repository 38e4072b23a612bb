"""What the exercises' tests share: the library-backed answer to every exercise, and one written
from scratch (answers.py)."""
import pytest
from answers import OWN, SOLUTIONS


@pytest.fixture(scope="session")
def solutions():
    return SOLUTIONS


@pytest.fixture(scope="session")
def own():
    return OWN
