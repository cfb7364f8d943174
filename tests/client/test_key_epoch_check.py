"""The key-epoch check of ``sigshare doctor`` and ``init``: every forum secret installed counts
(the configured file and those installed from sealed envelopes), and a rotation under way whose
secret is missing here is a warning."""

from __future__ import annotations

from sigshare.client.checks import Status, key_epoch_check
from sigshare.client.hub_types import HubParameters, PublishedBloom
from sigshare.sketch.bloom import BloomParams


def published(*key_ids: str, next_key_id: str | None = None) -> HubParameters:
    """The hub publishing kind ``kind<i>`` under each of ``key_ids``."""
    bloom = {}
    for number, key_id in enumerate(key_ids):
        kind = f"kind{number}"
        params = BloomParams.for_forum(kind, key_id, 1000, 0.001, 32)
        bloom[kind] = PublishedBloom(
            kind=kind,
            key_id=key_id,
            capacity=params.capacity,
            target_fpr=params.target_fpr,
            m=params.m,
            k=params.k,
            quorum=2,
            retention_days=30,
            reveal_members=False,
            digest=params.digest(),
        )
    return HubParameters(
        bloom=bloom, minhash={}, max_upload_bytes=1, chunk_bytes=1, next_key_id=next_key_id
    )


def test_a_secret_installed_from_an_envelope_counts() -> None:
    check = key_epoch_check(published("k2"), ("k1", "k2"))
    assert (check.status, check.detail) == (Status.OK, "k2, as the hub's parameters")


def test_no_installed_secret_of_the_published_epoch_fails() -> None:
    check = key_epoch_check(published("k3"), ("k1", "k2"))
    assert check.status is Status.FAIL
    assert check.detail == (
        "the forum secret is for key id k1, k2, the hub publishes parameters for k3 only: "
        "sketches made with this secret would be refused"
    )


def test_a_rotation_whose_secret_is_missing_here_is_a_warning() -> None:
    check = key_epoch_check(published("k1", next_key_id="k2"), ("k1",))
    assert check.status is Status.WARN
    assert check.detail == (
        "the forum is rotating to key epoch k2, whose secret is not installed here yet: "
        "sketches cannot be sent ahead, and they stop counting at the switch"
    )


def test_a_rotation_whose_secret_is_installed_is_fine() -> None:
    check = key_epoch_check(published("k1", next_key_id="k2"), ("k1", "k2"))
    assert (check.status, check.detail) == (
        Status.OK,
        "k1, as the hub's parameters; rotating to k2, installed",
    )


def test_a_kind_under_an_epoch_not_installed_is_a_warning() -> None:
    check = key_epoch_check(published("k1", "k9"), ("k1",))
    assert check.status is Status.WARN
    assert check.detail == (
        "the forum secret is for key id k1; the hub publishes kind1 for another key id: those "
        "would be refused"
    )
