"""A whole rotation of the forum secret, end to end, on SQLite and on PostgreSQL.

Four members share e-mail addresses and prompt campaigns under key epoch k1; the admin revokes
m4 and records that a rotation is due; the custodian seals k2 to the three members left; two of
them pick it up on their next night and send their sketches ahead; the operator switches the
hub to k2; the third catches up a night later. At each step every member's ``sigshare matches``
is compared with the exact oracle of the members whose sketches count at that moment. Then the
hub's database is read as a thief would, with everything m4 kept (the k1 secret, its own member
keys): the k2 envelopes do not open and the k2 filters answer nothing about any value, while the
same test with the k2 secret finds every member's values; and no k2 secret byte is anywhere in
the database or in any command's output.

Answers are asserted exactly, not within a tolerance. Every filter here is far below capacity:
the Poisson allowance of over-counts at 10⁻⁹ is 0 (checked from the filters' fills by
:func:`exact_answers_expected`, not assumed). Campaigns are exact by construction: templates
share no word, and every member's cluster of a template has the template as its core.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.orm import Session

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.domain import minhash_family_kind
from sigshare.hub.services.parameters import kind_parameters
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.models import PrincipalRow, metadata
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.keyring import (
    SUITE,
    EnvelopeAddressError,
    KeyringError,
    open_envelope,
    read_header,
)
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.codec import decode_bloom
from sigshare.sketch.keys import ForumSecret, KeyPurpose, load_secret_file
from sigshare.sketch.prf import KeyedPRF
from tests.support.cli import table_cells
from tests.support.e2e import own_filter, write_indicator_csv, write_prompts
from tests.support.hub import PromptForum, overlapping_sets, prompt_forum
from tests.support.oracles import poisson_allowance
from tests.support.sealed_forum import (
    CUSTODIAN,
    FIRST_SECRET,
    KEY_ID,
    ForumPlan,
    Person,
    SealedForum,
    provision,
    serving_forum,
)

MEMBERS = ("m1", "m2", "m3", "m4")
NEW_KEY_ID = "k2"
EMAIL = "email"
PROMPT = "prompt"
PROMPT_SKETCH = f"minhash:{PROMPT}"
"""What a member's sync calls the sketch of its prompt clusters."""
QUORUM = 2
PLAN = ForumPlan(
    members=MEMBERS,
    email_capacity=200,
    email_quorum=QUORUM,
    prompt_family=PROMPT,
    prompt_quorum=QUORUM,
)
TEMPLATES = {"m1": (0, 1, 2, 4), "m2": (0, 1, 3, 7), "m3": (0, 2, 3, 6), "m4": (0, 3, 5, 6)}
"""The prompt campaigns (templates) in each member's traffic: one all four run, some two or
three run, and one each of m1, m2 and m4 alone."""
NOT_AUTHORISED = "error: not authorised by the hub: unknown or revoked credential"
HPKE_INFO_DOMAIN = b"sigshare/v1/envelope-info\x00"


# ---------------------------------------------------------------------------------- oracle


@dataclass(frozen=True)
class Matches:
    """What a member's ``sigshare matches`` says: its own e-mail values other members hold and
    its prompt campaigns other members run, each with how many other members."""

    emails: dict[str, int]
    campaigns: dict[int, int]
    """Template → other members."""


@dataclass(frozen=True)
class Holdings:
    """Every member's e-mail values and prompts, and the answers they imply."""

    emails: dict[str, frozenset[str]]
    prompts: PromptForum

    def expected(self, member: str, counted: Collection[str]) -> Matches:
        """``member``'s matches while the sketches of ``counted`` (``member`` among them) are
        the ones the hub answers from: each own value or campaign that at least :data:`QUORUM`
        of them hold, with the number of the others."""
        assert member in counted

        def others(holders: Collection[str]) -> int:
            present = set(holders) & set(counted)
            return len(present) - 1 if member in present and len(present) >= QUORUM else 0

        emails = {
            value: n
            for value in self.emails[member]
            if (n := others([m for m, values in self.emails.items() if value in values]))
        }
        campaigns = {
            template: n
            for template in self.prompts.plan[member]
            if (n := others(self.prompts.holders(template)))
        }
        return Matches(emails, campaigns)

    def universe(self) -> list[str]:
        """Every e-mail value any member holds, m4's included."""
        return sorted(set().union(*self.emails.values()))


def holdings() -> Holdings:
    """Addresses held by each subset of the members (:func:`overlapping_sets`: 8 of each
    member's own, 3 per pair and per triple, 5 all four hold) and prompts of
    :data:`TEMPLATES`."""
    return Holdings(overlapping_sets(MEMBERS), prompt_forum(TEMPLATES))


def reported(member: Person, data: Holdings) -> Matches:
    """``member``'s ``sigshare matches --json``, each campaign named by the template all its
    prompts come from (and holding every prompt of that template the member has)."""
    document = member.json("matches")
    assert document["pulled"] is True
    emails: dict[str, int] = {}
    for item in document["indicators"]:
        assert (item["kind"], item["category"]) == (EMAIL, "fraud"), item
        assert item["value"] not in emails, f"{member.name}: {item['value']} listed twice"
        emails[item["value"]] = item["other_members"]
    texts = data.prompts.prompts[member.name]
    labels = dict(zip(texts, data.prompts.labels[member.name], strict=True))
    campaigns: dict[int, int] = {}
    for campaign in document["campaigns"]:
        (template,) = {labels[text] for text in campaign["prompts"]}
        assert sorted(campaign["prompts"]) == sorted(
            text for text in texts if labels[text] == template
        ), f"{member.name}: template {template} split or mixed"
        assert campaign["similarity"] == 1.0  # every member's cluster core is the template
        assert template not in campaigns
        campaigns[template] = campaign["other_members"]
    return Matches(emails, campaigns)


def exact_answers_expected(forum: SealedForum, secret: ForumSecret, data: Holdings) -> None:
    """Check that no over-count is to be expected under ``secret``'s epoch, so that answers
    can be compared exactly: a value's count rises above the truth only if a filter of a
    member not holding it has all ``k`` of its positions set (probability ``fill^k``);
    over a member's values and the others' filters that is at most Poisson(``n · Σ fill^k``),
    whose 1 − 10⁻⁹ quantile must be 0."""
    params = email_params(forum, secret.key_id)
    rates = {
        name: own_filter(secret, params, values).fill() ** params.k
        for name, values in data.emails.items()
    }
    for member, values in data.emails.items():
        expected = len(values) * sum(rate for name, rate in rates.items() if name != member)
        assert poisson_allowance(expected) == 0, (member, expected)


# ---------------------------------------------------------------------------------- the hub


def email_params(forum: SealedForum, key_id: str) -> BloomParams:
    """The ``email`` parameters the hub publishes, under ``key_id``."""
    with session_scope(forum.engine) as session:
        published = kind_parameters(session, EMAIL)
    assert published is not None
    params = published.bloom_params()
    return BloomParams(EMAIL, key_id, params.m, params.k, params.capacity, params.target_fpr)


def principal_names(session: Session) -> dict[int, str]:
    rows = session.execute(select(PrincipalRow.id, PrincipalRow.name))
    return {row.id: row.name for row in rows}


def active_submissions(forum: SealedForum, family_kind: str, key_id: str) -> dict[str, int]:
    """The hub's active submissions of ``family_kind`` under ``key_id``: member → id."""
    with session_scope(forum.engine) as session:
        names = principal_names(session)
        return {
            names[s.member_id]: s.id
            for s in SubmissionRepository(session).active(family_kind, key_id)
        }


def active_payloads(forum: SealedForum, key_id: str) -> dict[str, bytes]:
    """What a copy of the hub's database gives away: every active ``email`` filter of
    ``key_id`` as stored, by member."""
    with session_scope(forum.engine) as session:
        names = principal_names(session)
        repository = SubmissionRepository(session)
        return {
            names[s.member_id]: repository.payload(s.id) for s in repository.active(EMAIL, key_id)
        }


def pickups(forum: SealedForum, key_id: str) -> dict[str, bool]:
    """``sigshare-hub keys status --key-id KEY_ID``: each recipient, whether it fetched its
    envelope."""
    document = forum.admin_json("keys", "status", "--key-id", key_id)
    return {e["recipient"]: e["first_fetched_at"] is not None for e in document["envelopes"]}


def hpke_parts(envelope: bytes) -> tuple[bytes, bytes]:
    """An SGEV v1 envelope's HPKE ``info`` and sealed secret, read by the byte layout
    :mod:`sigshare.keyring.envelope` documents (an 11-byte prefix, five u16-length strings,
    two i64 times: the header; then a u32 length and the sealed bytes): what someone who
    ignores its signature and addressing would try to decrypt."""
    offset = 11
    for _ in range(5):
        (length,) = struct.unpack_from(">H", envelope, offset)
        offset += 2 + length
    offset += 16
    header = envelope[:offset]
    (sealed_length,) = struct.unpack_from(">I", envelope, offset)
    sealed = envelope[offset + 4 : offset + 4 + sealed_length]
    return HPKE_INFO_DOMAIN + header, sealed


def secret_forms(secret: ForumSecret) -> dict[bytes, str]:
    """The secret's bytes and every text form a program might store them in."""
    raw = secret.secret
    return {
        raw: f"{secret.key_id} secret (bytes)",
        raw.hex().encode(): f"{secret.key_id} secret (hex)",
        base64.b64encode(raw): f"{secret.key_id} secret (base64)",
        base64.urlsafe_b64encode(raw).rstrip(b"="): f"{secret.key_id} secret (base64url)",
    }


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def found_in_hub(forum: SealedForum, needles: Mapping[bytes, str]) -> set[str]:
    """Where the hub keeps any of ``needles``: every column of every row of every table, and
    for SQLite the database files and payload blobs themselves."""
    found: set[str] = set()
    with forum.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    data = _as_bytes(value)
                    found |= {
                        f"{what} in {table.name}.{column.name}"
                        for needle, what in needles.items()
                        if needle in data
                    }
    if forum.url.startswith("sqlite"):
        for path in sorted(forum.directory.glob("hub.db*")):
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                data = file.read_bytes()
                found |= {
                    f"{what} in file {file.relative_to(forum.directory)}"
                    for needle, what in needles.items()
                    if needle in data
                }
    return found


# ---------------------------------------------------------------------------------- the forum


@pytest.fixture
def forum(empty_database_url: str, tmp_path: Path) -> Iterator[SealedForum]:
    """Members m1–m4 and the custodian, ``email`` and ``prompt`` published under k1, over an
    empty database of each backend."""
    credentials = provision(empty_database_url, PLAN)
    with serving_forum(tmp_path, empty_database_url, credentials) as forum:
        yield forum


def inputs(forum: SealedForum, data: Holdings) -> dict[str, tuple[str, str]]:
    """Each member's export files: its e-mail indicators and its prompts."""
    files = {}
    for name in MEMBERS:
        home = forum.people[name].directory
        emails = write_indicator_csv(
            home / "emails.csv", [(EMAIL, value, "fraud") for value in sorted(data.emails[name])]
        )
        prompts = write_prompts(home / "prompts.jsonl", data.prompts.prompts[name])
        files[name] = (str(emails), str(prompts))
    return files


def pushed(document: dict[str, Any]) -> list[tuple[str, bool]]:
    """A sync's submissions: name and whether the hub had it already."""
    return [(s["name"], s["unchanged"]) for s in document["push"]["submissions"]]


def test_a_full_rotation_with_four_members(
    forum: SealedForum, caplog: pytest.LogCaptureFixture
) -> None:
    """Revocation, rotation, pickup, the switch and a late member, each checked against the
    exact answers; then the leak a departed member could make of a copy of the database."""
    caplog.set_level(logging.INFO)
    data = holdings()
    files = inputs(forum, data)
    people = forum.people
    keeper = people[CUSTODIAN]
    exact_answers_expected(forum, FIRST_SECRET, data)

    # keys registered and approved, the custodian pinned; everyone syncs under k1.
    forum.set_up_custodian()
    for name in MEMBERS:
        forum.set_up_member(name)
    for name in MEMBERS:
        document = people[name].json("sync", *files[name])
        assert pushed(document) == [(EMAIL, False), (PROMPT_SKETCH, False)]
        assert document["keys"]["installed"] == []
    for name in MEMBERS:  # the first to sync pulled before the others had pushed
        people[name].json("pull")
    for name in MEMBERS:
        assert reported(people[name], data) == data.expected(name, MEMBERS), name

    # m4 leaves: revoked, and a rotation is due.
    revoked = forum.admin("member", "revoke", "m4", "--rotate").splitlines()
    assert revoked[0].startswith("revoked member m4 at ")
    assert revoked[1:] == [
        "rotation due (member m4 revoked): a custodian runs `sigshare keys rotate --key-id "
        "NEW_ID`, then an admin `sigshare-hub params epoch NEW_ID`"
    ]
    due = forum.admin_json("keys", "status")["rotation_due"]
    assert [request["reason"] for request in due] == ["member m4 revoked"]

    # The custodian seals k2 to the three members left, announcing tomorrow's switch.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    rotation = forum.rotate(NEW_KEY_ID, "--activate-at", tomorrow.isoformat())
    remaining = ["m1", "m2", "m3"]
    assert rotation["recipients"] == remaining
    assert rotation["first_sealed"] == {name: people[name].keys().fingerprint for name in remaining}
    assert (rotation["rotation_due"], rotation["unregistered"]) == (["member m4 revoked"], [])
    assert rotation["activate_at"] == tomorrow.isoformat()
    new_secret = load_secret_file(keeper.installed(NEW_KEY_ID))
    assert new_secret.key_id == NEW_KEY_ID
    envelopes = forum.envelopes(NEW_KEY_ID)
    assert sorted(envelopes) == remaining  # m4 got none
    assert pickups(forum, NEW_KEY_ID) == dict.fromkeys(remaining, False)
    overview = forum.admin_json("keys", "status")
    assert (overview["rotation_due"], overview["uncovered"]) == ([], [])
    exact_answers_expected(forum, new_secret, data)

    # Night 1: m1 and m2 install k2 and send ahead under it; m3 misses the night.
    ahead: dict[str, dict[str, int]] = {}
    for name in ("m1", "m2"):
        document = people[name].json("sync", *files[name])
        (installed,) = document["keys"]["installed"]
        assert (installed["key_id"], installed["activate_at"]) == (
            NEW_KEY_ID,
            tomorrow.isoformat(),
        )
        assert load_secret_file(people[name].installed(NEW_KEY_ID)) == new_secret
        assert pushed(document) == [(EMAIL, True), (PROMPT_SKETCH, True)]
        sent = document["push"]["ahead"]
        assert sent["key_id"] == NEW_KEY_ID
        assert [(s["name"], s["unchanged"]) for s in sent["submissions"]] == [
            (f"{EMAIL}@{NEW_KEY_ID}", False),
            (f"{PROMPT_SKETCH}@{NEW_KEY_ID}", False),
        ]
        ahead[name] = {s["name"].split("@")[0]: s["submission_id"] for s in sent["submissions"]}
    assert pickups(forum, NEW_KEY_ID) == {"m1": True, "m2": True, "m3": False}
    status = forum.admin_json("keys", "status", "--key-id", NEW_KEY_ID)
    assert {e["recipient"]: e["sent_ahead"] for e in status["envelopes"]} == {
        "m1": [EMAIL, PROMPT],
        "m2": [EMAIL, PROMPT],
        "m3": [],
    }
    # Still k1: m3's filter counts, m4's was withdrawn with its credential.
    before_switch = reported(people["m1"], data)
    assert before_switch == data.expected("m1", remaining)
    assert active_submissions(forum, EMAIL, NEW_KEY_ID) == {}  # sent ahead: pending

    # The operator switches the hub to k2: m1's and m2's filters are carried over.
    switch = forum.admin_run("params", "epoch", NEW_KEY_ID)
    assert switch.exit_code == 0, switch.output
    assert table_cells(switch.stdout) == [
        ["kind", EMAIL, KEY_ID, "2 of 3"],
        ["family", PROMPT, KEY_ID, "2 of 3"],
    ]
    assert switch.stderr == (
        f"warning: 1 member(s) have not fetched their envelope for {NEW_KEY_ID} yet (m3): "
        "their values count in no answer until their next sync fetches it and resubmits\n"
    )
    carried = {name: ids[EMAIL] for name, ids in ahead.items()}
    assert active_submissions(forum, EMAIL, NEW_KEY_ID) == carried
    assert active_submissions(forum, EMAIL, KEY_ID) == {}
    prompt_kind = minhash_family_kind(PROMPT)
    assert active_submissions(forum, prompt_kind, NEW_KEY_ID) == {
        name: ids[PROMPT_SKETCH] for name, ids in ahead.items()
    }

    # No gap: m1's next sync sends nothing new (its filter sent ahead is the active one)
    # and is answered from the carried filters of m1 and m2 at once.
    document = people["m1"].json("sync", *files["m1"])
    assert document["keys"]["installed"] == []
    assert [
        (s["name"], s["unchanged"], s["submission_id"]) for s in document["push"]["submissions"]
    ] == [
        (EMAIL, True, ahead["m1"][EMAIL]),
        (PROMPT_SKETCH, True, ahead["m1"][PROMPT_SKETCH]),
    ]
    assert document["push"]["ahead"] == {"key_id": None, "submissions": []}
    after_switch = reported(people["m1"], data)
    assert after_switch == data.expected("m1", ["m1", "m2"])
    with_m2 = {v: n for v, n in before_switch.emails.items() if v in data.emails["m2"]}
    assert with_m2
    assert with_m2.keys() <= after_switch.emails.keys()  # nothing shared with m2 went missing
    campaigns_with_m2 = set(before_switch.campaigns) & set(data.prompts.plan["m2"])
    assert campaigns_with_m2 <= set(after_switch.campaigns)

    # Night 2: m3 catches up (installs k2, resubmits under it); everyone sees all three.
    document = people["m3"].json("sync", *files["m3"])
    assert [entry["key_id"] for entry in document["keys"]["installed"]] == [NEW_KEY_ID]
    assert pushed(document) == [(EMAIL, False), (PROMPT_SKETCH, False)]
    assert document["push"]["ahead"] == {"key_id": None, "submissions": []}
    assert pickups(forum, NEW_KEY_ID) == dict.fromkeys(remaining, True)
    after = forum.admin_json("keys", "status", "--key-id", NEW_KEY_ID)
    assert all("sent_ahead" not in e for e in after["envelopes"])  # switched: nothing pending
    for name in ("m1", "m2"):
        assert pushed(people[name].json("sync", *files[name])) == [
            (EMAIL, True),
            (PROMPT_SKETCH, True),
        ]
    assert sorted(active_submissions(forum, EMAIL, NEW_KEY_ID)) == remaining
    for name in remaining:
        assert reported(people[name], data) == data.expected(name, remaining), name
    # m4 cannot even ask: its credential is refused.
    refused = people["m4"].run("sync", *files["m4"])
    assert refused.exit_code == ExitCode.AUTH
    assert NOT_AUTHORISED in refused.stderr.splitlines()

    # A copy of the hub's database in m4's hands (the k1 secret, its own member keys).
    departed = people["m4"].keys()
    custodian_key = keeper.keys().signing_public
    for recipient, envelope in envelopes.items():
        assert read_header(envelope).recipient == recipient
        for posing_as in ("m4", recipient):
            with pytest.raises(KeyringError) as caught:
                open_envelope(
                    envelope,
                    recipient=posing_as,
                    keys=departed,
                    custodian_signing_public=custodian_key,
                )
            assert isinstance(caught.value, EnvelopeAddressError)
        # Past the addressing checks, HPKE itself: m4's private key does not open it; the
        # recipient's does (so the attempt is the right one).
        info, sealed = hpke_parts(envelope)
        with pytest.raises(InvalidTag):
            SUITE.decrypt(sealed, departed.sealing.private_key(), info=info)
        own_key = people[recipient].keys().sealing.private_key()
        assert SUITE.decrypt(sealed, own_key, info=info) == new_secret.secret

    payloads = active_payloads(forum, NEW_KEY_ID)
    assert sorted(payloads) == remaining
    new_params = email_params(forum, NEW_KEY_ID)
    filters = {name: decode_bloom(payload, new_params) for name, payload in payloads.items()}
    universe = data.universe()
    k = new_params.k
    # Each test of a value against a filter it is not in is a false positive with probability
    # fill^k, whatever key tokenised the value.
    expected_false = len(universe) * sum(bloom.fill() ** k for bloom in filters.values())
    allowance = poisson_allowance(expected_false)

    def hits(secret: ForumSecret) -> dict[str, set[str]]:
        prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, EMAIL))
        tokens = prf.tokens(universe)
        return {
            name: {v for v, hit in zip(universe, bloom.contains_tokens(tokens), strict=True) if hit}
            for name, bloom in filters.items()
        }

    with_old_secret = hits(FIRST_SECRET)
    assert sum(len(found) for found in with_old_secret.values()) <= allowance, with_old_secret
    with_new_secret = hits(new_secret)  # the control: the same test sees what is there
    for name, found in with_new_secret.items():
        assert data.emails[name] <= found, name
    false = sum(len(found - data.emails[name]) for name, found in with_new_secret.items())
    assert false <= allowance

    # The hub never held the k2 secret, and no command or log line showed it.
    assert found_in_hub(forum, secret_forms(new_secret) | secret_forms(FIRST_SECRET)) == set()
    # The control: the same scan finds what the hub does keep, wherever it keeps it.
    located = found_in_hub(forum, {envelopes["m1"]: "envelope", payloads["m1"]: "filter"})
    assert "envelope in key_envelopes.envelope" in located
    assert any(place.startswith("filter in ") for place in located), located
    forum.watch.check(caplog.text, "the hub's log")
