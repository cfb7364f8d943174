"""Fixtures shared by the member-side tests. A module that needs another forum defines its own
``forum`` fixture, which overrides the sealed-distribution one here."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sealed_forum import SealedForum, provision_template, sealed_forum


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def hub_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, str]]:
    """A provisioned hub database for sealed key distribution (copied for each test)."""
    path = tmp_path_factory.mktemp("sealed-template") / "hub.db"
    credentials = provision_template(path)
    return path.read_bytes(), credentials


@pytest.fixture
def forum(tmp_path: Path, hub_template: tuple[bytes, dict[str, str]]) -> Iterator[SealedForum]:
    """A served hub with a custodian and members, none set up for sealed distribution yet."""
    template, credentials = hub_template
    with sealed_forum(tmp_path, template, credentials) as forum:
        yield forum
