"""Bearer credentials: format, uniqueness, hashing, constant-time checks, no leaks in repr."""

from __future__ import annotations

import hashlib

import pytest

from sigshare.hub.services.credentials import (
    new_credential,
    parse_credential,
    secret_matches,
)


def test_new_credentials_parse_back_and_are_unique() -> None:
    seen = set()
    for _ in range(200):
        credential = new_credential()
        token = credential.token
        assert token.startswith("sgs1_")
        parsed = parse_credential(token)
        assert parsed == credential
        seen.add(credential.credential_id)
    assert len(seen) == 200


def test_hash_is_sha256_of_the_secret_and_matches_only_that_secret() -> None:
    credential = new_credential()
    assert credential.secret_hash == hashlib.sha256(credential.secret.encode()).digest()
    assert secret_matches(credential.secret, credential.secret_hash)
    assert not secret_matches(new_credential().secret, credential.secret_hash)
    last = "B" if credential.secret.endswith("A") else "A"
    assert not secret_matches(credential.secret[:-1] + last, credential.secret_hash)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer sgs1_0123456789abcdef_" + "a" * 43,
        "sgs1_0123456789abcdef_" + "a" * 42,
        "sgs1_0123456789abcdeF_" + "a" * 43,
        "sgs2_0123456789abcdef_" + "a" * 43,
        "sgs1_0123456789abcdef_" + "a" * 42 + "=",
        "sgs1_0123456789abcdef" + "a" * 44,
    ],
)
def test_malformed_tokens_are_not_credentials(token: str) -> None:
    assert parse_credential(token) is None


def test_repr_never_shows_the_secret() -> None:
    credential = new_credential()
    assert credential.secret not in repr(credential)
    assert credential.secret not in str(credential)
