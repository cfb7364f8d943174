"""Indicator kinds: canonical forms, reject reasons, idempotence, the registry and batches."""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sigshare.sketch.errors import InvalidValueError, RejectReason, UnknownKindError
from sigshare.sketch.kinds import (
    KIND_NAMES,
    KIND_TYPES,
    MAX_RAW_LENGTH,
    Kind,
    canonicalise_batch,
    get_kind,
    kind_name_for_code,
)
from sigshare.sketch.kinds.domain import DomainError, _canonical_domain_idna, canonical_domain
from sigshare.sketch.kinds.payment import luhn_valid

R = RejectReason
GMAIL_RULES = {"provider_rules": True}
US = {"default_region": "US"}
GB = {"default_region": "GB"}
BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
UUID_TEXT = "123e4567-e89b-12d3-a456-426614174000"


def canon(kind: str, value: Any, **options: Any) -> str:
    return get_kind(kind, **options).canonicalise(value)


def attempt(kind: Kind, value: str) -> str | InvalidValueError:
    """The canonical form, or the error (returned, so property tests can assert on it)."""
    try:
        return kind.canonicalise(value)
    except InvalidValueError as error:
        return error


def rejection(kind: str, value: Any, **options: Any) -> InvalidValueError:
    with pytest.raises(InvalidValueError) as caught:
        get_kind(kind, **options).canonicalise(value)
    return caught.value


# --------------------------------------------------------------------------- accepted spellings

ACCEPTED: list[tuple[str, dict[str, Any], str, str]] = [
    # email
    ("email", {}, "Alice@Example.COM", "alice@example.com"),
    ("email", {}, "  alice@example.com\n", "alice@example.com"),
    ("email", {}, "a.b+tag@GoogleMail.com", "a.b+tag@googlemail.com"),
    ("email", {}, "Ünïcode@BÜCHER.de", "ünïcode@xn--bcher-kva.de"),
    ("email", {}, "x@bücher.de.", "x@xn--bcher-kva.de"),
    ("email", {}, "o'brien!#$%&*/=?^_`{|}~-@example.org", "o'brien!#$%&*/=?^_`{|}~-@example.org"),
    ("email", {}, "İ@example.com", "i\u0307@example.com"),
    ("email", GMAIL_RULES, "A.B.C+spam@gmail.com", "abc@gmail.com"),
    ("email", GMAIL_RULES, "a.b+x+y@GoogleMail.com", "ab@gmail.com"),
    ("email", GMAIL_RULES, "alice+shop@outlook.com", "alice@outlook.com"),
    ("email", GMAIL_RULES, "alice+shop@hotmail.com", "alice@hotmail.com"),
    ("email", GMAIL_RULES, "alice+shop@live.com", "alice@live.com"),
    ("email", GMAIL_RULES, "alice+shop@icloud.com", "alice@icloud.com"),
    ("email", GMAIL_RULES, "alice+shop@me.com", "alice@me.com"),
    ("email", GMAIL_RULES, "alice+shop@fastmail.com", "alice@fastmail.com"),
    ("email", GMAIL_RULES, "alice+shop@proton.me", "alice@proton.me"),
    ("email", GMAIL_RULES, "alice+shop@protonmail.com", "alice@protonmail.com"),
    ("email", GMAIL_RULES, "a.lice+shop@outlook.com", "a.lice@outlook.com"),
    ("email", GMAIL_RULES, "+shop@outlook.com", "+shop@outlook.com"),
    ("email", GMAIL_RULES, "a.+shop@outlook.com", "a.+shop@outlook.com"),
    ("email", GMAIL_RULES, "a.+shop@gmail.com", "a@gmail.com"),
    ("email", GMAIL_RULES, "+shop@gmail.com", "+shop@gmail.com"),
    ("email", GMAIL_RULES, "a.b+c@yahoo.com", "a.b+c@yahoo.com"),
    ("email", GMAIL_RULES, "a.b-c@yahoo.com", "a.b-c@yahoo.com"),
    ("email", GMAIL_RULES, "a.b+c@mail.gmail.com", "a.b+c@mail.gmail.com"),
    ("email", GMAIL_RULES, "a+b@hotmail.co.uk", "a+b@hotmail.co.uk"),
    # phone
    ("phone", {}, "+1 (415) 555-0123", "+14155550123"),
    ("phone", {}, "+1.415.555.0123", "+14155550123"),
    ("phone", {}, "tel:+1-415-555-0123", "+14155550123"),
    ("phone", {}, "+1 415 555 0123 ext. 45", "+14155550123"),
    ("phone", {}, "+1 415 555 0123 x45", "+14155550123"),
    (
        "phone",
        {},
        "+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
        "+14155550123",
    ),
    ("phone", {}, "+44 (0)20 7946 0958", "+442079460958"),
    ("phone", {}, "+39 06 1234 5678", "+390612345678"),
    ("phone", {}, "+1 415 123 4567", "+14151234567"),
    ("phone", US, "(415) 555-0123", "+14155550123"),
    ("phone", US, "+44 20 7946 0958", "+442079460958"),
    ("phone", GB, "020 7946 0958", "+442079460958"),
    ("phone", GB, "0044 20 7946 0958", "+442079460958"),
    ("phone", {"default_region": "gb"}, "020 7946 0958", "+442079460958"),
    ("phone", {"strict": True}, "+1 201 555 0123", "+12015550123"),
    # ip
    ("ip", {}, "192.0.2.1", "192.0.2.1"),
    ("ip", {}, " 192.0.2.1 ", "192.0.2.1"),
    ("ip", {}, "2001:DB8:0:0::1", "2001:db8::1"),
    ("ip", {}, "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("ip", {}, "::ffff:192.0.2.1", "192.0.2.1"),
    ("ip", {}, "::FFFF:c000:0201", "192.0.2.1"),
    ("ip", {}, "::1", "::1"),
    # ip_prefix
    ("ip_prefix", {}, "192.0.2.77", "192.0.2.0/24"),
    ("ip_prefix", {}, "192.0.2.77/32", "192.0.2.0/24"),
    ("ip_prefix", {}, "192.0.2.128/25", "192.0.2.0/24"),
    ("ip_prefix", {}, "192.0.2.77/24", "192.0.2.0/24"),
    ("ip_prefix", {}, "192.0.2.0/255.255.255.0", "192.0.2.0/24"),
    ("ip_prefix", {}, "2001:DB8:1:2::5", "2001:db8:1::/48"),
    ("ip_prefix", {}, "2001:db8:1:ff00::/56", "2001:db8:1::/48"),
    ("ip_prefix", {}, "2001:db8:1::/48", "2001:db8:1::/48"),
    ("ip_prefix", {}, "::ffff:192.0.2.1", "192.0.2.0/24"),
    ("ip_prefix", {}, "::ffff:192.0.2.0/120", "192.0.2.0/24"),
    # domain
    ("domain", {}, "EXAMPLE.com", "example.com"),
    ("domain", {}, "example.com.", "example.com"),
    ("domain", {}, "bücher.de", "xn--bcher-kva.de"),
    ("domain", {}, "BÜCHER.DE", "xn--bcher-kva.de"),
    ("domain", {}, "XN--BCHER-KVA.de", "xn--bcher-kva.de"),
    ("domain", {}, "example\u3002com", "example.com"),
    ("domain", {}, "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),
    ("domain", {}, "faß.de", "xn--fa-hia.de"),
    ("domain", {}, "sub.example.co.uk", "sub.example.co.uk"),
    ("domain", {}, "123.example.com", "123.example.com"),
    ("domain", {}, "a" * 63 + ".com", "a" * 63 + ".com"),
    # payment_fingerprint
    ("payment_fingerprint", {}, "Xt5EWLLDS7FJjR1c", "Xt5EWLLDS7FJjR1c"),
    ("payment_fingerprint", {}, " Xt5EWLLDS7FJjR1c\t", "Xt5EWLLDS7FJjR1c"),
    ("payment_fingerprint", {}, "tok_1AbC:x=y+z/w.v-u", "tok_1AbC:x=y+z/w.v-u"),
    ("payment_fingerprint", {}, "abcdef", "abcdef"),
    ("payment_fingerprint", {}, "4242424242424241", "4242424242424241"),
    ("payment_fingerprint", {}, "424242424242", "424242424242"),
    ("payment_fingerprint", {}, "F" * 128, "F" * 128),
    # device_id
    ("device_id", {}, UUID_TEXT, UUID_TEXT),
    ("device_id", {}, UUID_TEXT.upper(), UUID_TEXT),
    ("device_id", {}, "{" + UUID_TEXT.upper() + "}", UUID_TEXT),
    ("device_id", {}, UUID_TEXT.replace("-", ""), UUID_TEXT),
    ("device_id", {}, "urn:uuid:" + UUID_TEXT, UUID_TEXT),
    ("device_id", {}, "AbC-123_xyz", "AbC-123_xyz"),
    ("device_id", {}, "{" + UUID_TEXT, "{" + UUID_TEXT),
    ("device_id", {}, "123e4567-e89b12d3-a456-426614174000", "123e4567-e89b12d3-a456-426614174000"),
    ("device_id", {}, "x" * 256, "x" * 256),
    # username
    ("username", {}, "Bob", "bob"),
    ("username", {}, "@Bob", "bob"),
    ("username", {}, "\uff20\uff22\uff2f\uff22", "bob"),
    ("username", {}, "\ufb01sh", "fish"),
    ("username", {}, "Straße", "strasse"),
    ("username", {}, "user@instance.social", "user@instance.social"),
    ("username", {}, "ΣΊΣΥΦΟΣ", "σίσυφοσ"),
    ("username", {}, "@" + "a" * 128, "a" * 128),
    # wallet
    (
        "wallet",
        {},
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x52908400098527886e0f7030069857d2e4169ee7",
    ),
    (
        "wallet",
        {},
        "0X52908400098527886E0F7030069857D2E4169EE7",
        "0x52908400098527886e0f7030069857d2e4169ee7",
    ),
    (
        "wallet",
        {},
        "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    ),
    (
        "wallet",
        {},
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    ),
    (
        "wallet",
        {},
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
    ),
    ("wallet", {}, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("wallet", {}, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ("wallet", {}, "TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC", "TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC"),
    (
        "wallet",
        {},
        "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
        "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
    ),
]


@pytest.mark.parametrize(("kind", "options", "raw", "expected"), ACCEPTED)
def test_accepted_spelling_has_exact_canonical_form(
    kind: str, options: dict[str, Any], raw: str, expected: str
) -> None:
    result = canon(kind, raw, **options)
    assert result == expected
    assert canon(kind, result, **options) == result


def test_254_octet_address_is_the_limit() -> None:
    address = LONG_ADDRESS.replace("d" * 58, "d" * 57)
    assert len(address) == 254
    assert canon("email", address) == address
    assert rejection("email", LONG_ADDRESS).reason is R.TOO_LONG
    assert canon("email", "a" * 64 + "@example.com") == "a" * 64 + "@example.com"


def test_253_octet_domain_is_the_limit() -> None:
    name = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    assert len(name) == 253
    assert canon("domain", name) == name
    assert rejection("domain", name + "d").reason is R.BAD_DOMAIN


# ----------------------------------------------------------------------------------- rejections

LONG_LOCAL = "a" * 65
LONG_ADDRESS = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com"

REJECTED: list[tuple[str, dict[str, Any], Any, RejectReason]] = [
    # common checks (base class) through a few kinds
    ("email", {}, "", R.EMPTY),
    ("ip", {}, " \t\n", R.EMPTY),
    ("username", {}, 42, R.BAD_SYNTAX),
    ("device_id", {}, "x" * (MAX_RAW_LENGTH + 1), R.TOO_LONG),
    # email
    ("email", {}, "no-at-sign.example.com", R.BAD_SYNTAX),
    ("email", {}, "a@b@example.com", R.BAD_SYNTAX),
    ("email", {}, '"john doe"@example.com', R.BAD_SYNTAX),
    ("email", {}, "@example.com", R.BAD_SYNTAX),
    ("email", {}, ".alice@example.com", R.BAD_SYNTAX),
    ("email", {}, "alice.@example.com", R.BAD_SYNTAX),
    ("email", {}, "al..ice@example.com", R.BAD_SYNTAX),
    ("email", {}, "al ice@example.com", R.BAD_CHARACTERS),
    ("email", {}, "al\x00ice@example.com", R.BAD_CHARACTERS),
    ("email", {}, "al\u200bice@example.com", R.BAD_CHARACTERS),
    ("email", {}, "al(ice)@example.com", R.BAD_CHARACTERS),
    ("email", {}, "a,b@example.com", R.BAD_CHARACTERS),
    ("email", {}, LONG_LOCAL + "@example.com", R.TOO_LONG),
    ("email", {}, "é" * 33 + "@example.com", R.TOO_LONG),
    ("email", {}, LONG_ADDRESS, R.TOO_LONG),
    ("email", {}, "alice@", R.BAD_DOMAIN),
    ("email", {}, "alice@localhost", R.BAD_DOMAIN),
    ("email", {}, "alice@[192.0.2.1]", R.BAD_DOMAIN),
    ("email", {}, "alice@exa_mple.com", R.BAD_DOMAIN),
    ("email", {}, "alice@example..com", R.BAD_DOMAIN),
    # phone
    ("phone", {}, "415 555 0123", R.NOT_A_PHONE_NUMBER),
    ("phone", {}, "0044 20 7946 0958", R.NOT_A_PHONE_NUMBER),
    ("phone", {}, "not a number", R.NOT_A_PHONE_NUMBER),
    ("phone", {}, "+999 1234 5678", R.NOT_A_PHONE_NUMBER),
    ("phone", US, "call me", R.NOT_A_PHONE_NUMBER),
    ("phone", {}, "+1 12", R.IMPOSSIBLE_PHONE_NUMBER),
    ("phone", {}, "+1 415 555 0123 4567", R.IMPOSSIBLE_PHONE_NUMBER),
    ("phone", {"strict": True}, "+1 415 123 4567", R.IMPOSSIBLE_PHONE_NUMBER),
    ("phone", {"strict": True}, "+1 999 999 9999", R.IMPOSSIBLE_PHONE_NUMBER),
    # ip
    ("ip", {}, "010.0.0.1", R.BAD_ADDRESS),
    ("ip", {}, "256.0.0.1", R.BAD_ADDRESS),
    ("ip", {}, "192.0.2", R.BAD_ADDRESS),
    ("ip", {}, "fe80::1%eth0", R.BAD_ADDRESS),
    ("ip", {}, "192.0.2.0/24", R.BAD_ADDRESS),
    ("ip", {}, "[2001:db8::1]", R.BAD_ADDRESS),
    ("ip", {}, "example.com", R.BAD_ADDRESS),
    ("ip", {}, "2001:db8::1::2", R.BAD_ADDRESS),
    # ip_prefix
    ("ip_prefix", {}, "10.0.0.0/8", R.PREFIX_TOO_SHORT),
    ("ip_prefix", {}, "192.0.2.0/23", R.PREFIX_TOO_SHORT),
    ("ip_prefix", {}, "2001:db8::/32", R.PREFIX_TOO_SHORT),
    ("ip_prefix", {}, "2001:db8::/47", R.PREFIX_TOO_SHORT),
    ("ip_prefix", {}, "::ffff:0:0/96", R.PREFIX_TOO_SHORT),
    ("ip_prefix", {}, "192.0.2.0/33", R.BAD_ADDRESS),
    ("ip_prefix", {}, "fe80::1%eth0", R.BAD_ADDRESS),
    ("ip_prefix", {}, "010.0.0.0/24", R.BAD_ADDRESS),
    ("ip_prefix", {}, "not-an-ip", R.BAD_ADDRESS),
    # domain
    ("domain", {}, "localhost", R.BAD_DOMAIN),
    ("domain", {}, "a..example.com", R.BAD_DOMAIN),
    ("domain", {}, ".example.com", R.BAD_DOMAIN),
    ("domain", {}, "example.com..", R.BAD_DOMAIN),
    ("domain", {}, "a" * 64 + ".com", R.BAD_DOMAIN),
    ("domain", {}, "é" * 60 + ".com", R.BAD_DOMAIN),
    ("domain", {}, "192.0.2.1", R.BAD_DOMAIN),
    ("domain", {}, "[2001:db8::1]", R.BAD_DOMAIN),
    ("domain", {}, "example.123", R.BAD_DOMAIN),
    ("domain", {}, "_dmarc.example.com", R.BAD_DOMAIN),
    ("domain", {}, "https://example.com/", R.BAD_DOMAIN),
    ("domain", {}, "-example.com", R.BAD_DOMAIN),
    ("domain", {}, "ab--cd.com", R.BAD_DOMAIN),
    ("domain", {}, "xn--zz.com", R.BAD_DOMAIN),
    ("domain", {}, "exa mple.com", R.BAD_DOMAIN),
    # payment_fingerprint
    ("payment_fingerprint", {}, "4242 4242 4242 4242", R.LOOKS_LIKE_CARD_NUMBER),
    ("payment_fingerprint", {}, "4242-4242-4242-4242", R.LOOKS_LIKE_CARD_NUMBER),
    ("payment_fingerprint", {}, "4242424242424242", R.LOOKS_LIKE_CARD_NUMBER),
    ("payment_fingerprint", {}, "378282246310005", R.LOOKS_LIKE_CARD_NUMBER),
    ("payment_fingerprint", {}, "4222222222222", R.LOOKS_LIKE_CARD_NUMBER),
    ("payment_fingerprint", {}, "abcde", R.BAD_SYNTAX),
    ("payment_fingerprint", {}, "F" * 129, R.TOO_LONG),
    ("payment_fingerprint", {}, "fp with spaces", R.BAD_CHARACTERS),
    ("payment_fingerprint", {}, "fp_ünicode", R.BAD_CHARACTERS),
    ("payment_fingerprint", {}, "fp;drop", R.BAD_CHARACTERS),
    # device_id
    ("device_id", {}, "x" * 257, R.TOO_LONG),
    ("device_id", {}, "has space", R.BAD_CHARACTERS),
    ("device_id", {}, "tab\tinside", R.BAD_CHARACTERS),
    ("device_id", {}, "ünicode", R.BAD_CHARACTERS),
    ("device_id", {}, "bell\x07", R.BAD_CHARACTERS),
    # username
    ("username", {}, "@", R.EMPTY),
    ("username", {}, "@@bob", R.BAD_SYNTAX),
    ("username", {}, "bo b", R.BAD_CHARACTERS),
    ("username", {}, "bo\u200bb", R.BAD_CHARACTERS),
    ("username", {}, "bo\x1bb", R.BAD_CHARACTERS),
    ("username", {}, "bo\ud800b", R.BAD_CHARACTERS),
    ("username", {}, "\u00a8bob", R.BAD_CHARACTERS),
    ("username", {}, "a" * 129, R.TOO_LONG),
    ("username", {}, "\ufb03" * 43, R.TOO_LONG),
    # wallet
    ("wallet", {}, "0x52908400098527886E0F7030069857D2E4169EE", R.BAD_SYNTAX),
    ("wallet", {}, "0x52908400098527886E0F7030069857D2E4169EEG", R.BAD_SYNTAX),
    ("wallet", {}, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwF5mdq", R.BAD_SYNTAX),
    ("wallet", {}, "bc1qb", R.BAD_SYNTAX),
    ("wallet", {}, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN0", R.BAD_SYNTAX),
    ("wallet", {}, "1BvBMSEYstWetqTFn5Au4m4G", R.BAD_SYNTAX),
    ("wallet", {}, "1" * 65, R.BAD_SYNTAX),
    (
        "wallet",
        {},
        "addr1qx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer3n0d3vllmyqwsx5",
        R.BAD_SYNTAX,
    ),
]


def test_rejected_table_boundaries_are_what_they_claim() -> None:
    # Sanity of hand-made samples, so the table cannot silently test something else.
    assert len("1BvBMSEYstWetqTFn5Au4m4GF") == 25
    assert len("1BvBMSEYstWetqTFn5Au4m4G") == 24
    assert len(LONG_ADDRESS) == 255
    assert len("é" * 33) == 33
    assert len(("é" * 33).encode()) == 66
    assert len("\ufb03".casefold()) == 3


@pytest.mark.parametrize(("kind", "options", "raw", "reason"), REJECTED)
def test_rejected_value_has_exact_reason(
    kind: str, options: dict[str, Any], raw: Any, reason: RejectReason
) -> None:
    error = rejection(kind, raw, **options)
    assert error.reason is reason
    assert error.kind == kind
    assert error.detail
    assert str(error) == f"invalid {kind}: {error.detail}"


def test_wallet_accepts_the_25_character_base58_boundary() -> None:
    assert canon("wallet", "1BvBMSEYstWetqTFn5Au4m4GF") == "1BvBMSEYstWetqTFn5Au4m4GF"
    assert canon("wallet", "1" * 64) == "1" * 64


def test_payment_card_number_detail_tells_what_to_submit() -> None:
    error = rejection("payment_fingerprint", "4242 4242 4242 4242")
    assert "fingerprint" in error.detail
    assert "card number" in error.detail


def test_phone_without_country_code_detail_names_the_fix() -> None:
    error = rejection("phone", "415 555 0123")
    assert "country code" in error.detail
    assert "default_region" in error.detail
    # A + with an unknown code is not the "missing country code" case.
    assert "default_region" not in rejection("phone", "+999 1234 5678").detail


def test_wallet_mixed_case_bech32_detail() -> None:
    error = rejection("wallet", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwF5mdq")
    assert "mixes upper and lower case" in error.detail


# ------------------------------------------------------------------- details never echo values

SENSITIVE_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("email", {}, "victim.name@@example.com"),
    ("email", {}, "victim name@example.com"),
    ("email", {}, "victim.name@victim-domain"),
    ("email", {}, "victim.name" * 7 + "@example.com"),
    ("phone", {}, "4155550199"),
    ("phone", {}, "+1 415 555 01"),
    ("phone", {"strict": True}, "+1 415 123 4567"),
    ("ip", {}, "203.0.113.77/32"),
    ("ip", {}, "fe80::dead:beef%eth0"),
    ("ip_prefix", {}, "203.0.0.0/16"),
    ("domain", {}, "victim-company"),
    ("domain", {}, "victim_company.example"),
    ("domain", {}, "203.0.113.77"),
    ("payment_fingerprint", {}, "4111 1111 1111 1111"),
    ("payment_fingerprint", {}, "victim card token"),
    ("device_id", {}, "victim handset 4711"),
    ("username", {}, "victim name"),
    ("username", {}, "@@victimname"),
    ("wallet", {}, "victim-wallet-address"),
    ("wallet", {}, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwF5mdq"),
]


@pytest.mark.parametrize(("kind", "options", "raw"), SENSITIVE_REJECTS)
def test_detail_never_contains_the_raw_value(kind: str, options: dict[str, Any], raw: str) -> None:
    error = rejection(kind, raw, **options)
    assert raw not in error.detail
    assert raw not in str(error)
    assert "victim" not in str(error)
    for piece in raw.replace("@", " ").replace(".", " ").split():
        if len(piece) >= 6:
            assert piece not in str(error)


MARKER = "Qz7Xk"


@given(kind=st.sampled_from(KIND_NAMES), text=st.text(max_size=40))
def test_property_details_never_echo_input(kind: str, text: str) -> None:
    outcome = attempt(get_kind(kind), f"{text}{MARKER}{text}")
    if isinstance(outcome, InvalidValueError):
        assert MARKER.lower() not in str(outcome).lower()


# ------------------------------------------------------------------------ arbitrary-text safety


@given(kind=st.sampled_from(KIND_NAMES), value=st.text(max_size=80))
def test_property_any_text_is_canonical_or_invalid_and_idempotent(kind: str, value: str) -> None:
    instance = get_kind(kind)
    result = attempt(instance, value)  # nothing but InvalidValueError may escape
    if isinstance(result, InvalidValueError):
        assert isinstance(result.reason, RejectReason)
        return
    assert result
    assert result == result.strip()
    result.encode("utf-8")  # hashable downstream: no lone surrogates
    assert instance.canonicalise(result) == result


# ----------------------------------------------------------------- idempotence over valid inputs

_LDH_LABEL = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True).filter(
    lambda label: label[2:4] != "--"
)
_TLD = st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True)
_DOMAINS = st.builds(
    lambda labels, tld, dot: ".".join([*labels, tld]) + dot,
    st.lists(_LDH_LABEL, min_size=1, max_size=3),
    _TLD,
    st.sampled_from(["", "."]),
)
_U_LABELS = st.sampled_from(["bücher", "münchen", "пример", "例え", "δοκιμή", "faß", "ÆØÅ", "ﬁsh"])
_IDN_DOMAINS = st.builds(lambda u, d: f"{u}.{d}", _U_LABELS, _DOMAINS)


@given(domain=st.one_of(_DOMAINS, _IDN_DOMAINS))
def test_property_domain_idempotent(domain: str) -> None:
    result = canon("domain", domain)
    assert result == result.lower()
    assert result.isascii()
    assert not result.endswith(".")
    assert canon("domain", result) == result
    # ASCII letters only: str.upper() turns "ß" into "SS", a different name.
    shouted = "".join(char.upper() if char.isascii() else char for char in domain)
    assert canon("domain", shouted) == result
    assert canonical_domain(domain) == result


_ASCII_LOCAL = st.from_regex(
    r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(?:\.[a-zA-Z0-9_+-]{1,10}){0,2}", fullmatch=True
)
_PROVIDERS = st.sampled_from(
    ["gmail.com", "googlemail.com", "outlook.com", "icloud.com", "proton.me", "example.org"]
)


@given(
    local=_ASCII_LOCAL,
    domain=st.one_of(_DOMAINS, _IDN_DOMAINS, _PROVIDERS),
    provider_rules=st.booleans(),
)
def test_property_email_idempotent(local: str, domain: str, provider_rules: bool) -> None:
    kind = get_kind("email", provider_rules=provider_rules)
    result = kind.canonicalise(f"{local}@{domain}")
    expected_domain = canon("domain", domain)
    if provider_rules and expected_domain == "googlemail.com":
        expected_domain = "gmail.com"
    result_local, at, result_domain = result.partition("@")
    assert at == "@"
    assert result_domain == expected_domain
    assert kind.canonicalise(result) == result
    if not provider_rules:
        assert result_local == local.lower()


@given(
    local=st.text(
        alphabet=st.characters(
            blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp"),
            # U+037E GREEK QUESTION MARK is canonically equivalent to ";" (a special).
            blacklist_characters='@."(),:;<>[\\]\u037e',
        ),
        min_size=1,
        max_size=12,
    ),
    domain=_DOMAINS,
)
def test_property_unicode_email_idempotent(local: str, domain: str) -> None:
    kind = get_kind("email")
    result = attempt(kind, f"{local}@{domain}")
    if isinstance(result, InvalidValueError):
        # Only the octet limits can refuse such a local part.
        assert result.reason is R.TOO_LONG
        return
    assert kind.canonicalise(result) == result


_REGION_EXAMPLES = [
    (region, number)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    if (number := phonenumbers.example_number(region)) is not None
]
_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@given(example=st.sampled_from(_REGION_EXAMPLES), number_format=st.sampled_from(_FORMATS))
def test_property_phone_idempotent(
    example: tuple[str, phonenumbers.PhoneNumber], number_format: int
) -> None:
    region, number = example
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    kind = get_kind("phone", default_region=region, strict=True)
    spelled = phonenumbers.format_number(number, number_format)
    assert kind.canonicalise(spelled) == expected
    assert kind.canonicalise(expected) == expected
    assert get_kind("phone").canonicalise(expected) == expected


@given(address=st.ip_addresses(), upper=st.booleans(), exploded=st.booleans())
def test_property_ip_idempotent(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, upper: bool, exploded: bool
) -> None:
    spelled = address.exploded if exploded else str(address)
    spelled = spelled.upper() if upper else spelled
    result = canon("ip", spelled)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    assert result == str(mapped if mapped is not None else address)
    assert canon("ip", result) == result


@given(address=st.ip_addresses(), data=st.data())
def test_property_ip_prefix_idempotent(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    low, high = (24, 32) if address.version == 4 else (48, 128)
    prefix = data.draw(st.integers(low, high))
    result = canon("ip_prefix", f"{address}/{prefix}")
    expected = ipaddress.ip_network(f"{address}/{low}", strict=False)
    assert result == str(expected)
    assert canon("ip_prefix", str(address)) == result
    assert canon("ip_prefix", result) == result


@given(
    body=st.from_regex(r"[A-Za-z0-9_.:=+/-]{3,125}", fullmatch=True),
    prefix=st.sampled_from(["fp_", "tok", "Xt5", "nt:"]),
)
def test_property_payment_idempotent(body: str, prefix: str) -> None:
    value = prefix + body
    assert canon("payment_fingerprint", value) == value
    assert canon("payment_fingerprint", canon("payment_fingerprint", value)) == value


@given(device=st.uuids(), spelling=st.sampled_from(["str", "upper", "hex", "braces", "urn"]))
def test_property_device_uuid_spellings(device: uuid.UUID, spelling: str) -> None:
    spelled = {
        "str": str(device),
        "upper": str(device).upper(),
        "hex": device.hex.upper(),
        "braces": "{" + str(device) + "}",
        "urn": device.urn,
    }[spelling]
    result = canon("device_id", spelled)
    assert result == str(device)
    assert canon("device_id", result) == result


@given(
    value=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=256
    )
)
def test_property_device_opaque_idempotent(value: str) -> None:
    result = canon("device_id", value)
    assert canon("device_id", result) == result
    if len(value) != 32 and "-" not in value and "{" not in value and ":" not in value:
        assert result == value


@given(value=st.text(min_size=1, max_size=60))
def test_property_username_idempotent(value: str) -> None:
    try:
        result = canon("username", value)
    except InvalidValueError:
        return
    assert canon("username", result) == result
    assert canon("username", "@" + result) == result


@given(value=st.from_regex(r"@?[A-Za-z0-9_.]{1,30}", fullmatch=True))
def test_property_ascii_username(value: str) -> None:
    result = canon("username", value)
    assert result == value.removeprefix("@").lower()
    assert canon("username", result) == result


_HEX40 = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40)
_BECH32 = st.builds(
    lambda hrp, data, upper: f"{hrp}1{data}".upper() if upper else f"{hrp}1{data}",
    st.sampled_from(["bc", "tb", "BC", "Tb"]),
    st.text(alphabet=BECH32_CHARSET, min_size=6, max_size=87),
    st.booleans(),
)
_BASE58 = st.text(alphabet=BASE58_ALPHABET, min_size=25, max_size=64)


@given(hex_digits=_HEX40, prefix=st.sampled_from(["0x", "0X"]))
def test_property_wallet_evm(hex_digits: str, prefix: str) -> None:
    result = canon("wallet", prefix + hex_digits)
    assert result == "0x" + hex_digits.lower()
    assert canon("wallet", result) == result


@given(address=_BECH32)
def test_property_wallet_bech32(address: str) -> None:
    assume(address in (address.lower(), address.upper()))
    result = canon("wallet", address)
    assert result == address.lower()
    assert canon("wallet", result) == result


@given(address=_BASE58)
def test_property_wallet_base58(address: str) -> None:
    assume(not address.lower().startswith(("bc1", "tb1")))
    result = canon("wallet", address)
    assert result == address
    assert canon("wallet", result) == result


# ----------------------------------------------------------------------------- shared helpers


def test_canonical_domain_is_shared_and_raises_plain_value_error() -> None:
    assert canonical_domain("BÜCHER.de.") == "xn--bcher-kva.de"
    with pytest.raises(DomainError) as caught:
        canonical_domain("localhost")
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, InvalidValueError)
    assert "localhost" not in str(caught.value)
    # The email kind's domain part is exactly the domain kind's form.
    for domain in ["BÜCHER.de.", "Example.COM", "пример.рф", "example\u3002com"]:
        assert canon("email", f"a@{domain}") == "a@" + canon("domain", domain)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4242424242424242", True),
        ("4242424242424241", False),
        ("79927398713", True),
        ("79927398710", False),
        ("0", True),
        ("18", True),
        ("19", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


# ------------------------------------------------------------------------------------ registry

EXPECTED_CODES = {
    "email": 1,
    "phone": 2,
    "ip": 3,
    "ip_prefix": 4,
    "domain": 5,
    "payment_fingerprint": 6,
    "device_id": 7,
    "username": 8,
    "wallet": 9,
}


def test_registry_names_and_codes() -> None:
    assert set(KIND_NAMES) == set(EXPECTED_CODES)
    assert {name: KIND_TYPES[name].code for name in KIND_NAMES} == EXPECTED_CODES
    assert len({kind.code for kind in KIND_TYPES.values()}) == len(KIND_TYPES)
    for name, code in EXPECTED_CODES.items():
        assert kind_name_for_code(code) == name


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
def test_get_kind_returns_configured_instance(name: str) -> None:
    kind = get_kind(name)
    assert kind.name == name
    assert type(kind) is KIND_TYPES[name]
    assert kind.description
    assert "\n" not in kind.description
    assert kind.description == kind.description.strip()


def test_unknown_kind() -> None:
    with pytest.raises(UnknownKindError) as caught:
        get_kind("fax")
    assert isinstance(caught.value, KeyError)
    assert caught.value.name == "fax"
    assert "unknown kind 'fax'" in str(caught.value)
    assert "email" in str(caught.value)
    with pytest.raises(UnknownKindError):
        kind_name_for_code(0)
    with pytest.raises(UnknownKindError):
        kind_name_for_code(10)


def test_kind_options() -> None:
    assert get_kind("email", provider_rules=True).canonicalise("a.b@gmail.com") == "ab@gmail.com"
    assert get_kind("email").canonicalise("a.b@gmail.com") == "a.b@gmail.com"
    assert get_kind("phone", default_region="us").canonicalise("415 555 0123") == "+14155550123"
    for bad_region in ["XX", "001", "USA", ""]:
        with pytest.raises(ValueError, match="default_region"):
            get_kind("phone", default_region=bad_region)
    with pytest.raises(TypeError):
        get_kind("ip", strict=True)
    with pytest.raises(TypeError):
        KIND_TYPES["email"](True)  # type: ignore[call-arg]  # options are keyword-only
    with pytest.raises(TypeError):
        KIND_TYPES["phone"]("US")  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------- batch


def test_batch_counts_rejects_by_reason_and_keeps_indices() -> None:
    rows: list[Any] = [
        "Alice@Example.com",
        "no at sign",
        "",
        "bob@@example.com",
        None,
        " carol@example.org ",
        "dave@localhost",
        "x" * (MAX_RAW_LENGTH + 1),
    ]
    result = canonicalise_batch(get_kind("email"), rows)
    assert result.values == ["alice@example.com", "carol@example.org"]
    assert result.indices == [0, 5]
    assert result.rejects == Counter({R.BAD_SYNTAX: 3, R.EMPTY: 1, R.BAD_DOMAIN: 1, R.TOO_LONG: 1})
    assert result.rejected == 6


def test_batch_of_nothing_and_generator_input() -> None:
    empty = canonicalise_batch(get_kind("ip"), [])
    assert (empty.values, empty.indices, empty.rejected) == ([], [], 0)
    result = canonicalise_batch(get_kind("ip"), (f"192.0.2.{n}" for n in (1, 300, 2)))
    assert result.values == ["192.0.2.1", "192.0.2.2"]
    assert result.indices == [0, 2]
    assert result.rejects == Counter({R.BAD_ADDRESS: 1})


@given(kind=st.sampled_from(KIND_NAMES), rows=st.lists(st.text(max_size=40), max_size=20))
def test_property_batch_accounts_for_every_row(kind: str, rows: list[str]) -> None:
    instance = get_kind(kind)
    result = canonicalise_batch(instance, rows)  # must not raise
    assert len(result.values) + result.rejected == len(rows)
    assert len(result.indices) == len(result.values)
    assert result.indices == sorted(set(result.indices))
    assert all(0 <= index < len(rows) for index in result.indices)
    for index, value in zip(result.indices, result.values, strict=True):
        assert instance.canonicalise(rows[index]) == value
    rejected_rows = [i for i in range(len(rows)) if i not in set(result.indices)]
    reasons: Counter[RejectReason] = Counter()
    for index in rejected_rows:
        with pytest.raises(InvalidValueError) as caught:
            instance.canonicalise(rows[index])
        reasons[caught.value.reason] += 1
    assert reasons == result.rejects


_GOOD_OR_BAD_IPS = st.one_of(
    st.ip_addresses().map(str), st.sampled_from(["", "x", "1.2.3", "::1%lo", "10.0.0.0/8"])
)


@given(rows=st.lists(_GOOD_OR_BAD_IPS, max_size=30))
def test_property_batch_with_mixed_rows(rows: list[str]) -> None:
    result = canonicalise_batch(get_kind("ip"), rows)
    good = [
        i for i, row in enumerate(rows) if row not in {"", "x", "1.2.3", "::1%lo", "10.0.0.0/8"}
    ]
    assert result.indices == good
    assert result.rejects[R.EMPTY] == rows.count("")
    assert result.rejects[R.BAD_ADDRESS] == len(rows) - len(good) - rows.count("")


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="abXZ09-._", min_size=1, max_size=80))
def test_domain_fast_path_agrees_with_full_idna_processing(value: str) -> None:
    def outcome(function: Callable[[str], str]) -> str:
        try:
            return function(value)
        except DomainError:
            return "refused"

    assert outcome(canonical_domain) == outcome(_canonical_domain_idna)


@pytest.mark.parametrize(
    "value",
    [
        "a" * 63 + ".com",
        "a" * 64 + ".com",
        ("a" * 61 + ".") * 4 + "com",
        "xn--bcher-kva.de",
        "ab--c.com",
        "a.b-",
        "a.-b",
        "a.123",
        "a.1b",
        "EXAMPLE.com.",
    ],
)
def test_domain_fast_path_edge_cases_agree(value: str) -> None:
    results = []
    for function in (canonical_domain, _canonical_domain_idna):
        try:
            results.append(function(value))
        except DomainError:
            results.append("refused")
    assert results[0] == results[1]
