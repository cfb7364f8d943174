"""Regenerate the golden byte files (only after a deliberate format version bump).

Usage, from the repository root::

    .venv/bin/python tests/golden/make_golden.py           # compare only (exit 1 on drift)
    .venv/bin/python tests/golden/make_golden.py --write   # overwrite the files

The inputs below are duplicated in tests/sketch/test_codec.py on purpose: the test pins them
independently, so a drifted generator cannot silently re-bless changed bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter
from sigshare.sketch.codec import SignatureSet, encode_bloom, encode_signatures
from sigshare.sketch.prf import KeyedPRF

HERE = Path(__file__).resolve().parent


def golden_bloom() -> KeyedBloomFilter:
    params = BloomParams.for_capacity("email", "golden-1", 64, 0.01)  # m = 640, k = 7
    bloom = KeyedBloomFilter(params, KeyedPRF(bytes(range(32))))
    bloom.add(["a@example.com", "b@example.com", "c@example.com"])
    return bloom


def golden_signatures() -> SignatureSet:
    # 24 deterministic uint32 values: Knuth's multiplicative hash of 0..23 plus an offset.
    values = ((np.arange(24, dtype=np.uint64) * 2654435761 + 12345) % 2**32).astype(np.uint32)
    return SignatureSet(
        key_id="golden-1", shingle_unit="word", shingle_size=3, values=values.reshape(3, 8)
    )


def golden_files() -> dict[str, bytes]:
    bloom = golden_bloom()
    return {
        "bloom_v1_raw.bin": encode_bloom(bloom, compress=False),
        "bloom_v1_zlib.bin": encode_bloom(bloom, compress=True),
        "signatures_v1.bin": encode_signatures(golden_signatures()),
    }


def main(argv: list[str]) -> int:
    write = "--write" in argv
    drift = False
    for name, data in golden_files().items():
        path = HERE / name
        if write:
            path.write_bytes(data)
            print(f"wrote {path} ({len(data)} bytes)")
        elif not path.exists() or path.read_bytes() != data:
            drift = True
            print(f"DIFFERS: {path}")
        else:
            print(f"same: {path}")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
