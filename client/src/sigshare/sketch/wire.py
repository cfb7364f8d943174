"""The protobuf forms of sketch formats, shared by members and the hub.

The one module of :mod:`sigshare.sketch` that imports the generated stubs (``sigshare.v1``). It
owns two things both sides must agree on byte for byte:

* which ``sigshare.v1.SketchFormat`` value each :class:`~sigshare.sketch.codec.SketchFormat`
  travels as (:func:`format_to_proto`, :func:`format_from_proto`);
* the payload of a ``clusters`` submission: a ``ClusterSketchSet`` message whose ``signatures``
  field is a signature set (:func:`~sigshare.sketch.codec.encode_signatures`) and whose entries
  describe the clusters row by row, serialised deterministically. Members encode it with
  :func:`encode_cluster_set`, the hub decodes it with :func:`decode_cluster_set`;
  ``tests/golden/cluster_set_v1.bin`` pins the bytes.

The client's ``sigshare.client.wire`` and the hub's ``sigshare.hub.rpc.convert`` call these
functions; neither has its own copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from google.protobuf.message import DecodeError

from sigshare.sketch.cluster import CLUSTER_ID_PATTERN, ClusterInfo
from sigshare.sketch.codec import SignatureSet, SketchFormat, decode_signatures, encode_signatures
from sigshare.sketch.errors import FormatError, SketchError
from sigshare.v1 import hub_pb2

_PROTO_FORMATS: dict[SketchFormat, hub_pb2.SketchFormat.ValueType] = {
    SketchFormat.BLOOM_V1: hub_pb2.SKETCH_FORMAT_BLOOM_V1,
    SketchFormat.CLUSTERS_V1: hub_pb2.SKETCH_FORMAT_CLUSTERS_V1,
}
_FORMATS: dict[int, SketchFormat] = {int(value): name for name, value in _PROTO_FORMATS.items()}


def format_to_proto(sketch_format: SketchFormat) -> hub_pb2.SketchFormat.ValueType:
    """The wire value of ``sketch_format``."""
    return _PROTO_FORMATS[sketch_format]


def format_from_proto(value: int) -> SketchFormat | None:
    """The format a wire value names; ``None`` for ``SKETCH_FORMAT_UNSPECIFIED`` and values
    this version does not know."""
    return _FORMATS.get(value)


def encode_cluster_set(signatures: SignatureSet, clusters: Sequence[ClusterInfo]) -> bytes:
    """The payload of a ``clusters`` submission: signature row ``i`` belongs to ``clusters[i]``."""
    rows = int(signatures.values.shape[0]) if signatures.values.ndim == 2 else -1
    if rows != len(clusters):
        raise ValueError(f"{rows} signature rows for {len(clusters)} clusters")
    if len({cluster.cluster_id for cluster in clusters}) != len(clusters):
        raise ValueError("cluster ids must be distinct")
    message = hub_pb2.ClusterSketchSet(signatures=encode_signatures(signatures))
    for cluster in clusters:
        entry = message.clusters.add(
            cluster_id=cluster.cluster_id,
            volume=cluster.volume,
            category=cluster.category,
            core_size=cluster.core_size,
        )
        if cluster.first_seen is not None:
            entry.first_seen.FromDatetime(cluster.first_seen.astimezone(UTC))
        if cluster.last_seen is not None:
            entry.last_seen.FromDatetime(cluster.last_seen.astimezone(UTC))
    return message.SerializeToString(deterministic=True)


def decode_cluster_set(payload: bytes) -> tuple[SignatureSet, list[ClusterInfo]]:
    """The signatures and cluster descriptions of a ``clusters`` payload.

    Anything malformed raises :class:`FormatError`: bytes that are no ``ClusterSketchSet``, a
    bad signature set, a cluster id that is not 32 lowercase hex digits, a timestamp out of
    range. Whether the counts, volumes and categories are acceptable is the receiver's rule.
    """
    message = hub_pb2.ClusterSketchSet()
    try:
        message.ParseFromString(payload)
    except DecodeError:
        raise FormatError("payload is not a ClusterSketchSet message") from None
    try:
        signatures = decode_signatures(message.signatures)
    except SketchError as error:
        raise FormatError(f"cluster signatures: {error}") from None
    clusters = []
    for entry in message.clusters:
        if not CLUSTER_ID_PATTERN.fullmatch(entry.cluster_id):
            raise FormatError(
                f"cluster id {entry.cluster_id!r} is not 32 lower-case hex characters"
            )
        clusters.append(
            ClusterInfo(
                cluster_id=entry.cluster_id,
                volume=entry.volume,
                category=entry.category,
                first_seen=_moment(entry, "first_seen"),
                last_seen=_moment(entry, "last_seen"),
                core_size=entry.core_size,
            )
        )
    return signatures, clusters


def _moment(
    entry: hub_pb2.ClusterSketch, field: Literal["first_seen", "last_seen"]
) -> datetime | None:
    """An aware UTC datetime, or ``None`` when the member left the field unset."""
    if not entry.HasField(field):
        return None
    stamp = entry.first_seen if field == "first_seen" else entry.last_seen
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise FormatError(f"timestamp out of range: {error}") from None
