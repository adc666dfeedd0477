"""Shared test fixtures: the repo root on sys.path and the ../shared data folder."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared_data():
    """../shared/data, or skip when the checkout has no ../shared beside it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"{path} not found: these tests read ../shared/data beside the checkout")
    return path
