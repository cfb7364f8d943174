"""What sealed distribution of the forum secret costs: one rotation's envelopes for a forum of
members, sealed and signed by the custodian, then each opened and verified by its member.

Our envelopes (``sigshare.keyring``: HPKE with the hybrid MLKEM768-X25519 KEM, an Ed25519
signature over the header) are compared on the same machine and data with the classical RFC 9180
suite a forum could have used instead — X25519 / HKDF-SHA256 / ChaCha20-Poly1305 single-shot
sealing plus the same Ed25519 signature — so the ratio is the price of resistance to a future
quantum adversary, in time and in bytes.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from sigshare.keyring import MemberKeys, open_envelope, seal_envelope
from sigshare.sketch.keys import ForumSecret

CLASSICAL = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INFO = b"sigshare/v1/bench-info\x00"


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def bench_keyring(*, quick: bool) -> dict[str, Any]:
    members = 50 if quick else 500
    repeat = 2 if quick else 3
    custodian = MemberKeys.generate()
    recipients = [(f"member{i:04d}", MemberKeys.generate()) for i in range(members)]
    secret = ForumSecret.generate("k2027a")
    now = datetime.now(UTC).replace(microsecond=0)

    def seal_ours() -> list[bytes]:
        return [
            seal_envelope(
                secret,
                recipient=name,
                recipient_sealing_public=keys.sealing_public,
                recipient_signing_public=keys.signing_public,
                custodian="secretariat",
                custodian_keys=custodian,
                created_at=now,
                activate_at=None,
            )
            for name, keys in recipients
        ]

    def open_ours(envelopes: list[bytes]) -> int:
        opened = 0
        for (name, keys), envelope in zip(recipients, envelopes, strict=True):
            result = open_envelope(
                envelope,
                recipient=name,
                keys=keys,
                custodian_signing_public=custodian.signing_public,
            )
            opened += result.secret == secret
        return opened

    classical_keys = [x25519.X25519PrivateKey.generate() for _ in recipients]
    signer = ed25519.Ed25519PrivateKey.generate()
    verifier = signer.public_key()

    def seal_classical() -> list[tuple[bytes, bytes]]:
        sealed = [
            CLASSICAL.encrypt(secret.secret, key.public_key(), INFO) for key in classical_keys
        ]
        return [(data, signer.sign(data)) for data in sealed]

    def open_classical(envelopes: list[tuple[bytes, bytes]]) -> int:
        opened = 0
        for key, (data, signature) in zip(classical_keys, envelopes, strict=True):
            verifier.verify(signature, data)
            opened += CLASSICAL.decrypt(data, key, INFO) == secret.secret
        return opened

    best = {"seal_ours": math.inf, "open_ours": math.inf}
    best |= {"seal_classical": math.inf, "open_classical": math.inf}
    for _ in range(repeat):
        seconds, ours = _timed(seal_ours)
        best["seal_ours"] = min(best["seal_ours"], seconds)
        seconds, opened = _timed(functools.partial(open_ours, ours))
        assert opened == members
        best["open_ours"] = min(best["open_ours"], seconds)
        seconds, classical = _timed(seal_classical)
        best["seal_classical"] = min(best["seal_classical"], seconds)
        seconds, opened = _timed(functools.partial(open_classical, classical))
        assert opened == members
        best["open_classical"] = min(best["open_classical"], seconds)
    ours_bytes = sum(len(envelope) for envelope in ours) / members
    classical_bytes = sum(len(d) + len(s) for d, s in classical) / members
    return {
        "members": members,
        "rotation_seal_ms": best["seal_ours"] * 1e3,
        "open_per_member_ms": best["open_ours"] / members * 1e3,
        "classical_rotation_seal_ms": best["seal_classical"] * 1e3,
        "classical_open_per_member_ms": best["open_classical"] / members * 1e3,
        "seal_ratio_vs_classical": best["seal_ours"] / best["seal_classical"],
        "open_ratio_vs_classical": best["open_ours"] / best["open_classical"],
        "envelope_bytes": ours_bytes,
        "classical_envelope_bytes": classical_bytes,
        "definition": "a rotation: every member's envelope sealed and signed; per member: one "
        "envelope verified and opened; classical = X25519 HPKE + Ed25519, no header",
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"keyring": bench_keyring}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """A rotation for the forum size must take well under a second of the custodian's time."""
    if "keyring" not in results:
        return []
    result = results["keyring"]
    per_member = result["rotation_seal_ms"] / result["members"]
    return [
        {
            "goal": "rotation sealing per member (ms)",
            "measured": per_member,
            "target": "≤ 5",
            "met": per_member <= 5,
        }
    ]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    if "keyring" not in results:
        return
    r = results["keyring"]
    table = Table(
        title=f"sealed forum-secret envelopes: a rotation to {r['members']} members",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("MLKEM768-X25519 (ours)", justify="right")
    table.add_column("X25519 only", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "seal + sign every envelope (ms)",
        f"{r['rotation_seal_ms']:.1f}",
        f"{r['classical_rotation_seal_ms']:.1f}",
        f"{r['seal_ratio_vs_classical']:.2f}×",
    )
    table.add_row(
        "verify + open one envelope (ms)",
        f"{r['open_per_member_ms']:.3f}",
        f"{r['classical_open_per_member_ms']:.3f}",
        f"{r['open_ratio_vs_classical']:.2f}×",
    )
    table.add_row(
        "bytes per envelope",
        f"{r['envelope_bytes']:,.0f}",
        f"{r['classical_envelope_bytes']:,.0f}",
        f"{r['envelope_bytes'] / r['classical_envelope_bytes']:.1f}×",
    )
    Console().print(table)
