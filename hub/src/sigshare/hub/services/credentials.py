"""Bearer credentials: generated once, shown once, stored only as a hash.

A credential reads ``sgs1_<id>_<secret>``: ``id`` is 16 lower-case hex characters used to find the
principal (public, like a username), ``secret`` is 32 random bytes in URL-safe base64. The hub
stores ``SHA-256(secret)``: the secret has 256 bits of entropy, so a slow password hash would add
nothing, and a stolen database yields no usable credential. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

PREFIX = "sgs1"
_PATTERN = re.compile(r"sgs1_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Credential:
    credential_id: str
    secret: str = field(repr=False)

    @property
    def token(self) -> str:
        """The full bearer string, to hand to its owner once."""
        return f"{PREFIX}_{self.credential_id}_{self.secret}"

    @property
    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)


def new_credential() -> Credential:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return Credential(credential_id=secrets.token_hex(8), secret=secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_credential(token: str) -> Credential | None:
    """The parts of a bearer string, or ``None`` when it is not one (never raises, never logs)."""
    match = _PATTERN.fullmatch(token.strip())
    if match is None:
        return None
    return Credential(credential_id=match.group(1), secret=match.group(2))


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
