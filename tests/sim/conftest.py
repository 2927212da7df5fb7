"""Fixtures for the simulator tests (the fake controller lives in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sim.harness import FakeEsl, FakeForkServer


@pytest.fixture
def fake_esl() -> Iterator[FakeEsl]:
    server = FakeEsl()
    yield server
    server.close()


@pytest.fixture
def fork_server() -> Iterator[FakeForkServer]:
    server = FakeForkServer()
    yield server
    server.close()
