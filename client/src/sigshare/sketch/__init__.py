"""sigshare.sketch — the sketch core shared by members and the hub.

Everything here is pure computation on bytes and numpy arrays: no network, no database.
Kinds canonicalise raw values; keys derive per-purpose sub-keys from the forum secret; tokens,
Bloom filters and salted MinHash signatures are the only things that ever leave a member.
:mod:`sigshare.sketch.codec` defines their byte formats; :mod:`sigshare.sketch.wire` is the one
module here that uses the generated protobuf messages (cluster-set payloads, wire format values).
"""
