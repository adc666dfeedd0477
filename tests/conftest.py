"""Shared test fixtures: the repo root on sys.path, the ../shared data folder, a free port for torchrun."""
import socket
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


def free_port():
    """A free TCP port on the loopback, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
