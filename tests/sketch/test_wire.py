"""The protobuf forms shared by members and the hub: sketch format values and the cluster-set
payload (golden bytes, round trips, refusal of malformed payloads), and cluster descriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sigshare.sketch.cluster import ClusterInfo, new_cluster_id
from sigshare.sketch.codec import SignatureSet, SketchFormat, decode_signatures, encode_signatures
from sigshare.sketch.errors import FormatError
from sigshare.sketch.wire import (
    decode_cluster_set,
    encode_cluster_set,
    format_from_proto,
    format_to_proto,
)
from sigshare.v1 import hub_pb2

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cluster_set_v1.bin"
SEEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------- formats


def test_every_sketch_format_has_its_own_wire_value_and_back() -> None:
    assert {f: format_to_proto(f) for f in SketchFormat} == {
        SketchFormat.BLOOM_V1: hub_pb2.SKETCH_FORMAT_BLOOM_V1,
        SketchFormat.CLUSTERS_V1: hub_pb2.SKETCH_FORMAT_CLUSTERS_V1,
    }
    assert all(format_from_proto(format_to_proto(f)) is f for f in SketchFormat)


def test_the_wire_enum_names_no_format_the_enum_lacks() -> None:
    """A value added to the proto's SketchFormat needs a SketchFormat member."""
    known = {
        value for name, value in hub_pb2.SketchFormat.items() if not name.endswith("UNSPECIFIED")
    }
    assert known == {format_to_proto(f) for f in SketchFormat}


@pytest.mark.parametrize("value", [hub_pb2.SKETCH_FORMAT_UNSPECIFIED, 3, 2**31 - 1])
def test_unspecified_and_unknown_wire_values_name_no_format(value: int) -> None:
    assert format_from_proto(value) is None


def test_format_names_are_the_strings_members_pass_and_store() -> None:
    assert [f.value for f in SketchFormat] == ["bloom", "clusters"]


# ---------------------------------------------------------------------------------- golden bytes


def golden_cluster_set() -> tuple[SignatureSet, list[ClusterInfo]]:
    """The inputs of ``cluster_set_v1.bin`` (also in tests/golden/make_golden.py)."""
    values = ((np.arange(24, dtype=np.uint64) * 2246822519 + 777) % 2**32).astype(np.uint32)
    signatures = SignatureSet(
        key_id="golden-1", shingle_unit="word", shingle_size=1, values=values.reshape(3, 8)
    )
    clusters = [
        ClusterInfo(
            cluster_id="0123456789abcdef0123456789abcdef",
            volume=1500,
            category="jailbreak",
            first_seen=datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
            last_seen=datetime(2026, 12, 2, 23, 59, 59, 250000, tzinfo=UTC),
            core_size=23,
        ),
        ClusterInfo(
            cluster_id="fedcba9876543210fedcba9876543210",
            volume=3,
            category="",
            first_seen=datetime(2026, 12, 1, tzinfo=UTC),
            last_seen=None,
            core_size=300,
        ),
        ClusterInfo(
            cluster_id="00000000000000000000000000000001",
            volume=70000,
            category="distillation/math",
        ),
    ]
    return signatures, clusters


def test_cluster_set_golden_bytes_encode_and_decode_every_field() -> None:
    signatures, clusters = golden_cluster_set()
    assert encode_cluster_set(signatures, clusters) == GOLDEN.read_bytes()

    decoded, received = decode_cluster_set(GOLDEN.read_bytes())
    assert (decoded.key_id, decoded.shingle_unit, decoded.shingle_size) == ("golden-1", "word", 1)
    np.testing.assert_array_equal(decoded.values, signatures.values)
    assert decoded.values.dtype == np.uint32
    assert received == clusters
    assert [c.core_size for c in received] == [23, 300, 0]
    assert received[1].last_seen is None
    assert received[2].first_seen is None


# ---------------------------------------------------------------------------------- round trips


def test_cluster_set_round_trips_through_the_wire_message() -> None:
    values = np.random.default_rng(3).integers(0, 2**32, (2, 16), dtype=np.uint32)
    signatures = SignatureSet(key_id="k2026a", shingle_unit="word", shingle_size=3, values=values)
    clusters = [
        ClusterInfo(new_cluster_id(), volume=120, category="distillation", first_seen=SEEN),
        ClusterInfo(new_cluster_id(), volume=7, category="", last_seen=SEEN),
    ]
    message = hub_pb2.ClusterSketchSet.FromString(encode_cluster_set(signatures, clusters))
    decoded = decode_signatures(message.signatures)
    np.testing.assert_array_equal(decoded.values, values)
    assert [c.cluster_id for c in message.clusters] == [c.cluster_id for c in clusters]
    assert [c.volume for c in message.clusters] == [120, 7]
    assert message.clusters[0].first_seen.ToDatetime(tzinfo=UTC) == SEEN
    assert not message.clusters[0].HasField("last_seen")
    assert message.clusters[1].last_seen.ToDatetime(tzinfo=UTC) == SEEN
    assert decode_cluster_set(message.SerializeToString())[1] == clusters


def test_cluster_set_refuses_rows_and_clusters_that_disagree() -> None:
    values = np.zeros((3, 16), dtype=np.uint32)
    signatures = SignatureSet(key_id="k2026a", shingle_unit="word", shingle_size=3, values=values)
    with pytest.raises(ValueError, match="3 signature rows for 2 clusters"):
        encode_cluster_set(signatures, [ClusterInfo(new_cluster_id(), 1, "") for _ in range(2)])


def test_cluster_ids_are_random_lowercase_hex() -> None:
    ids = {new_cluster_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)
    with pytest.raises(ValueError, match="32 lowercase hex"):
        ClusterInfo("ABCD" * 8, volume=1, category="")


# ---------------------------------------------------------------------------------- refusals


def _signatures() -> bytes:
    values = np.ones((1, 8), dtype=np.uint32)
    return encode_signatures(SignatureSet("k2026a", "word", 3, values))


def _far_future() -> hub_pb2.ClusterSketch:
    entry = hub_pb2.ClusterSketch(cluster_id="ab" * 16, volume=1)
    entry.first_seen.seconds = 2**62  # beyond what a datetime can hold
    return entry


MALFORMED = {
    "not a message": (b"\x0a\x05ab", "payload is not a ClusterSketchSet message"),
    "bad signatures": (
        hub_pb2.ClusterSketchSet(signatures=b"SGMH").SerializeToString(),
        "cluster signatures: truncated",
    ),
    "upper-case cluster id": (
        hub_pb2.ClusterSketchSet(
            signatures=_signatures(), clusters=[hub_pb2.ClusterSketch(cluster_id="AB" * 16)]
        ).SerializeToString(),
        "cluster id 'ABABABABABABABABABABABABABABABAB' is not 32 lower-case hex characters",
    ),
    "timestamp out of range": (
        hub_pb2.ClusterSketchSet(
            signatures=_signatures(), clusters=[_far_future()]
        ).SerializeToString(),
        "timestamp out of range",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_cluster_set_is_a_format_error(case: str) -> None:
    payload, message = MALFORMED[case]
    with pytest.raises(FormatError) as caught:
        decode_cluster_set(payload)
    assert str(caught.value).startswith(message)
