"""``python -m bench.attacks [--json] [--seed N]``: privacy attack simulations and their figures.

Six attacks on the design, each measured and printed (see docs/threat-model.md):

1. **Curious hub, dictionary attack without the forum secret.** Members build keyed Bloom filters
   of their true values; the "hub" holds the filters, the public parameters (``m``, ``k``, key id,
   kind, the HKDF labels) and a dictionary containing every true value, and tests each candidate
   with every token pipeline it could guess (unkeyed MurmurHash3, AES under a zero or guessed key,
   HKDF from a guessed secret, plain hashes, HMAC under the public label, …). A candidate is
   *flagged* if all its ``k`` bits are set. Without the secret each candidate's positions are
   independent of the filter, so a true value is flagged with probability ``fill^k``, exactly
   like a false one: the number of true values flagged is compared with the Binomial tail of
   that chance level at ``p < 10⁻⁶``.
2. **Collusion** (the hub plus one member, i.e. with the secret): the same attack recovers every
   true value (recall 1.0): collusion costs the whole forum its token secrecy.
3. **Insider enumeration** over a real hub on loopback: three members each hold 2,000 IPv4
   addresses of 198.18.0.0/16 (the RFC 2544 benchmarking range: strings only, never contacted);
   a fourth member — holding the forum secret, as every member does — submits an ordinary filter
   of its own 2,000 addresses and then tries every member-facing RPC to learn which of the
   65,536 addresses the others hold: one Resolve of all of them, Resolve in batches within its
   budget, Confirm of every token, ListMatches, GetStatus. *Before* (the old resolution vector
   ``R = C − B_own``) it tokenised the /16 offline and read every other member's address off
   ``R``; *now* it gets a non-zero answer only for addresses its own filter holds — its own and
   its filter's false positives — and for those exactly what a member legitimately holding them
   learns.
4. **Claiming**: the same insider replaces its filter with 2,000 addresses it does not hold, again
   and again (allowed: intersection is the service, and a claim cannot be told from a holding).
   It learns about the claimed addresses only, at most ``capacity`` distinct tokens per kind and
   rolling 24 hours across all its submissions; measured at the default parameters with quorum 2
   and 3 against the exact expectation (hypergeometric) and the hard bound.
5. **Differential observation**: two hubs whose states differ only in other members' values that
   are not in the requester's filter give byte-identical Resolve answers — an answer depends only
   on the requester's own filter and the holders of the token.
6. **Poisoning**: saturated, over-capacity, under-declared and crafted-pattern filters are refused
   by :func:`sigshare.sketch.checks.check_filter` and by the hub's Submit (INVALID_ARGUMENT),
   leaving no submission behind and every other member's answers unchanged.

Everything is derived from fixed seeds; every hub runs on a temporary SQLite file on 127.0.0.1.
The test suite (tests/security/test_privacy_attacks.py) asserts on the same functions.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import mmh3
import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, select

from sigshare.client import wire
from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import ConfirmedToken, ResolveResult, TokenStatus
from sigshare.hub.domain import Role
from sigshare.hub.services import coordinator_views, parameters, principals
from sigshare.hub.services.refusals import RefusalPolicy
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.models import SubmissionRow
from sigshare.sketch.bloom import BloomFilter, BloomParams, KeyedBloomFilter, bit_positions
from sigshare.sketch.checks import check_filter
from sigshare.sketch.codec import SketchFormat, encode_bloom
from sigshare.sketch.errors import SketchError
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.kinds import get_kind
from sigshare.sketch.prf import TOKEN_BYTES, KeyedPRF, TokenArray
from tests.support.hub import RunningHub, running_hub

ALPHA = 1e-6
"""Chance a correct (secret-less) attacker exceeds the Binomial bound: the test's false alarm."""
KEY_ID = "epoch-1"
KIND = "email"
IP = "ip"
MEMBERS = ("m1", "m2", "m3", "m4")
INSIDER = "insider"
DEFAULT_CAPACITY = 20_000
DEFAULT_FORUM_FPR = 1e-3
DEFAULT_MAX_MEMBERS = 32
SEED = 20_250_301
_SETUP = "attack-setup"
_T = TypeVar("_T")

# ---------------------------------------------------------------------------------- statistics


def _log_pmf(n: int, p: float, x: int) -> float:
    return (
        math.lgamma(n + 1)
        - math.lgamma(x + 1)
        - math.lgamma(n - x + 1)
        + x * math.log(p)
        + (n - x) * math.log1p(-p)
    )


def binomial_sf(n: int, p: float, x: int) -> float:
    """``P(Binomial(n, p) ≥ x)``."""
    if x <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0 or x > n:
        return 1.0 if p >= 1.0 and x <= n else 0.0
    total = 0.0
    for value in range(x, n + 1):
        term = math.exp(_log_pmf(n, p, value))
        total += term
        if value > n * p and term < total * 1e-17:
            break
    return min(1.0, total)


def binomial_bound(n: int, p: float, alpha: float = ALPHA) -> int:
    """Smallest ``t`` with ``P(Binomial(n, p) > t) ≤ alpha``: the most chance alone explains."""
    if p <= 0.0 or n == 0:
        return 0
    t = max(0, math.floor(n * p))
    while binomial_sf(n, p, t + 1) > alpha:
        t += 1
    return t


def _log_choose(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)


def hypergeometric_interval(
    population: int, successes: int, draws: int, alpha: float = ALPHA
) -> tuple[int, int]:
    """``(low, high)``: ``P(X < low) ≤ alpha`` and ``P(X > high) ≤ alpha`` for the number of
    successes ``X`` in ``draws`` drawn without replacement from ``population`` items of which
    ``successes`` are successes."""
    lowest, highest = max(0, draws - (population - successes)), min(draws, successes)
    total = _log_choose(population, draws)
    pmf = [
        math.exp(_log_choose(successes, x) + _log_choose(population - successes, draws - x) - total)
        for x in range(lowest, highest + 1)
    ]
    low, below = lowest, 0.0
    while low < highest and below + pmf[low - lowest] <= alpha:
        below += pmf[low - lowest]
        low += 1
    high, above = highest, 0.0
    while high > lowest and above + pmf[high - lowest] <= alpha:
        above += pmf[high - lowest]
        high -= 1
    return low, high


# ---------------------------------------------------------------------------------- the forum


@dataclass(frozen=True, slots=True)
class Setting:
    """One forum shape: members each holding ``per_member`` values of a ``dictionary``."""

    name: str
    per_member: int
    dictionary: int
    capacity: int
    forum_fpr: float
    max_members: int = DEFAULT_MAX_MEMBERS
    members: tuple[str, ...] = MEMBERS

    def params(self, kind: str = KIND) -> BloomParams:
        return BloomParams.for_forum(kind, KEY_ID, self.capacity, self.forum_fpr, self.max_members)


FORUM = Setting("forum default", 2_000, 20_000, DEFAULT_CAPACITY, DEFAULT_FORUM_FPR)
"""The parameters a forum would publish (capacity 20,000, forum false-shared rate 10⁻³ for up
to 32 members: 3.2·10⁻⁵ per filter), members at 10 % of capacity."""
DENSE = Setting("dense: filters at capacity", 2_000, 20_000, 2_000, 0.31)
"""Worst case for the members: every filter full at a per-filter rate of 1 % (0.31 / 31),
fill ≈ 0.5, chance level ≈ 1 % per value."""


@dataclass
class Forum:
    setting: Setting
    secret: ForumSecret
    params: BloomParams
    raw: list[str]
    """The dictionary as a hub would find it (mixed case, as in leaked lists)."""
    canonical: list[str]
    """The same values canonicalised by the ``email`` kind, as members hash them."""
    holdings: dict[str, np.ndarray[Any, np.dtype[np.bool_]]]
    """Member → which dictionary entries it holds."""
    filters: dict[str, KeyedBloomFilter] = field(default_factory=dict)

    def holders(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """For each dictionary entry, how many members hold it."""
        total: np.ndarray[Any, np.dtype[np.int64]] = np.zeros(self.setting.dictionary, np.int64)
        for held in self.holdings.values():
            total += held
        return total

    def prf(self) -> KeyedPRF:
        return KeyedPRF(self.secret.derive(KeyPurpose.BLOOM_TOKEN, KIND))

    def tokens_of(self, name: str) -> bytes:
        """The tokens of ``name``'s values, concatenated (what it asks the hub about)."""
        held = [self.canonical[i] for i in np.flatnonzero(self.holdings[name])]
        return self.prf().tokens(held).astype("<u8").tobytes()


def forum_secret(seed: int) -> ForumSecret:
    return ForumSecret(
        key_id=KEY_ID, secret=hashlib.sha256(f"sigshare attacks {seed}".encode()).digest()
    )


def make_forum(setting: Setting, seed: int = SEED) -> Forum:
    """A dictionary of distinct addresses; each member holds a random ``per_member`` of them."""
    rng = np.random.default_rng(seed)
    domains = ("example.com", "mail.example.org", "corp.example.net", "example.io")
    raw = [
        f"User.{i:06d}.{rng.integers(1 << 30):08x}@{domains[i % len(domains)].upper()}"
        for i in range(setting.dictionary)
    ]
    email = get_kind(KIND)
    canonical = [email.canonicalise(value) for value in raw]
    assert len(set(canonical)) == len(canonical), "dictionary entries must be distinct"
    secret = forum_secret(seed)
    params = setting.params()
    forum = Forum(setting, secret, params, raw, canonical, {})
    prf = forum.prf()
    for name in setting.members:
        held = np.zeros(setting.dictionary, dtype=np.bool_)
        held[rng.choice(setting.dictionary, size=setting.per_member, replace=False)] = True
        forum.holdings[name] = held
        bloom = KeyedBloomFilter(params, prf)
        bloom.add([canonical[i] for i in np.flatnonzero(held)])
        forum.filters[name] = bloom
    return forum


# ---------------------------------------------------------------------------- dictionary attack

TokenFunction = Callable[[Forum], TokenArray]


def _as_tokens(blocks: Sequence[bytes]) -> TokenArray:
    return np.frombuffer(b"".join(blocks), dtype="<u8").reshape(len(blocks), 2).copy()


def _hkdf_guess(secret: bytes) -> TokenFunction:
    def tokens(forum: Forum) -> TokenArray:
        guess = ForumSecret(key_id=forum.params.key_id, secret=secret)
        return KeyedPRF(guess.derive(KeyPurpose.BLOOM_TOKEN, KIND)).tokens(forum.canonical)

    return tokens


def _label(forum: Forum) -> bytes:
    """The public HKDF label of the token key: everything about the key but the secret."""
    return f"sigshare/v1/{KeyPurpose.BLOOM_TOKEN.value}/{KIND}/{forum.params.key_id}".encode()


HUB_STRATEGIES: dict[str, TokenFunction] = {
    "mmh3-128(canonical), unkeyed": lambda f: _as_tokens([mmh3.hash_bytes(v) for v in f.canonical]),
    "mmh3-128(raw value), unkeyed": lambda f: _as_tokens([mmh3.hash_bytes(v) for v in f.raw]),
    "AES under an all-zero key": lambda f: KeyedPRF(bytes(32)).tokens(f.canonical),
    "AES under SHA-256(public label)": lambda f: KeyedPRF(
        hashlib.sha256(_label(f)).digest()
    ).tokens(f.canonical),
    "AES under SHA-256(key id)": lambda f: KeyedPRF(
        hashlib.sha256(f.params.key_id.encode()).digest()
    ).tokens(f.canonical),
    "HKDF from an all-zero secret": _hkdf_guess(bytes(32)),
    "HKDF from a guessed passphrase": _hkdf_guess(
        hashlib.sha256(b"sigshare forum secret").digest()
    ),
    "HKDF from another epoch's secret": _hkdf_guess(hashlib.sha256(b"epoch-0 secret").digest()),
    "HMAC-SHA256(public label)": lambda f: _as_tokens(
        [hmac.new(_label(f), v.encode(), hashlib.sha256).digest()[:16] for v in f.canonical]
    ),
    "BLAKE2b-128(canonical)": lambda f: _as_tokens(
        [hashlib.blake2b(v.encode(), digest_size=16).digest() for v in f.canonical]
    ),
    "SHA-256(canonical)[:16]": lambda f: _as_tokens(
        [hashlib.sha256(v.encode()).digest()[:16] for v in f.canonical]
    ),
}
"""Every token pipeline a hub without the forum secret could try."""

COLLUSION = "forum secret (hub + one member)"


@dataclass(frozen=True, slots=True)
class StrategyResult:
    strategy: str
    uses_secret: bool
    flagged: int
    """Dictionary entries flagged as held, summed over members' filters."""
    flagged_true: int
    """Of those, entries the member really holds."""
    expected_true: float
    """Chance level: Σ over members of |held| × fill^k."""
    bound_true: int
    """Most true values chance explains at p < ALPHA (Binomial upper quantile)."""
    expected_flagged: float
    bound_flagged: int
    p_value: float
    """P(chance alone flags ≥ flagged_true true values)."""
    recall: float
    beyond_chance: int
    """True values flagged above the chance bound: 0 means nothing recovered."""


@dataclass(frozen=True, slots=True)
class DictionaryReport:
    setting: str
    m: int
    k: int
    capacity: int
    members: int
    dictionary: int
    true_values: int
    """Σ over members of the values each holds (the attack targets each filter)."""
    distinct_true: int
    fill: float
    """Mean fill of the members' filters."""
    false_positive_rate: float
    """Largest fill^k over the filters: a random candidate's chance of being flagged."""
    expected_false_positives: float
    """Σ over members of |dictionary| × fill^k."""
    results: list[StrategyResult]


def attack_filters(
    forum: Forum, strategy: str, tokens: TokenArray, uses_secret: bool
) -> StrategyResult:
    """Flag every dictionary entry whose ``k`` bits are all set, in each member's filter."""
    params = forum.params
    flagged = flagged_true = held_total = 0
    expected_true = expected_flagged = 0.0
    p_max = 0.0
    for name, bloom in forum.filters.items():
        held = forum.holdings[name]
        hits = bloom.contains_tokens(tokens)
        chance = params.fpr_at_fill(bloom.fill())
        p_max = max(p_max, chance)
        flagged += int(hits.sum())
        flagged_true += int((hits & held).sum())
        held_total += int(held.sum())
        expected_true += int(held.sum()) * chance
        expected_flagged += len(tokens) * chance
    n_filters = len(forum.filters)
    bound_true = binomial_bound(held_total, p_max)
    return StrategyResult(
        strategy=strategy,
        uses_secret=uses_secret,
        flagged=flagged,
        flagged_true=flagged_true,
        expected_true=expected_true,
        bound_true=bound_true,
        expected_flagged=expected_flagged,
        bound_flagged=binomial_bound(len(tokens) * n_filters, p_max),
        p_value=binomial_sf(held_total, p_max, flagged_true),
        recall=flagged_true / held_total if held_total else 0.0,
        beyond_chance=max(0, flagged_true - bound_true),
    )


def dictionary_attack(setting: Setting, seed: int = SEED) -> DictionaryReport:
    """Every secret-less strategy, then the colluding one, against ``setting``'s forum."""
    forum = make_forum(setting, seed)
    results = [
        attack_filters(forum, name, strategy(forum), uses_secret=False)
        for name, strategy in HUB_STRATEGIES.items()
    ]
    results.append(attack_filters(forum, COLLUSION, forum.prf().tokens(forum.canonical), True))
    fills = [bloom.fill() for bloom in forum.filters.values()]
    rates = [forum.params.fpr_at_fill(fill) for fill in fills]
    return DictionaryReport(
        setting=setting.name,
        m=forum.params.m,
        k=forum.params.k,
        capacity=forum.params.capacity,
        members=len(forum.filters),
        dictionary=setting.dictionary,
        true_values=sum(int(h.sum()) for h in forum.holdings.values()),
        distinct_true=int((forum.holders() > 0).sum()),
        fill=float(np.mean(fills)),
        false_positive_rate=max(rates),
        expected_false_positives=setting.dictionary * sum(rates),
        results=results,
    )


# ---------------------------------------------------------------------------------- a loopback hub


def stored_submissions(engine: Engine) -> int:
    """Every submission the hub has stored, whatever its status."""
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(SubmissionRow)) or 0)


def review_flags(engine: Engine, kind: str, member: str) -> tuple[str, ...]:
    """What a coordinator's submission review shows for ``member``'s active filter."""
    with session_scope(engine) as session:
        views = coordinator_views.submissions(session, kind)
    return tuple(flag for view in views if view.member == member for flag in view.flags)


@contextmanager
def loopback_hub(
    directory: Path,
    names: Sequence[str],
    *,
    kind: str = KIND,
    capacity: int,
    forum_fpr: float,
    max_members: int = DEFAULT_MAX_MEMBERS,
    quorum: int = 2,
    replace_interval_seconds: int | None = None,
) -> Iterator[RunningHub]:
    """A migrated SQLite hub on 127.0.0.1 with ``names`` as members and ``kind`` published
    (``replace_interval_seconds`` ``None``: the default interval), limiting refused credentials
    as a production hub does."""
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    credentials: dict[str, str] = {}
    try:
        with session_scope(engine) as session:
            for name in names:
                _, credential = principals.add_principal(
                    session, actor=_SETUP, name=name, role=Role.MEMBER, now=now
                )
                credentials[name] = credential.token
            parameters.set_kind_parameters(
                session,
                actor=_SETUP,
                kind=kind,
                key_id=KEY_ID,
                capacity=capacity,
                forum_fpr=forum_fpr,
                max_members=max_members,
                quorum=quorum,
                replace_interval_seconds=replace_interval_seconds,
                now=now,
            )
        with running_hub(engine, credentials, refusal_policy=RefusalPolicy()) as hub:
            yield hub
    finally:
        engine.dispose()


def submit_filter(client: HubClient, bloom: BloomFilter, kind: str = KIND) -> None:
    published = client.get_parameters().bloom[kind]
    client.submit(
        sketch_format=SketchFormat.BLOOM_V1,
        kind=kind,
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=bloom.count,
        payload=encode_bloom(bloom),
    )


def _attempt(call: Callable[[], _T]) -> tuple[str, _T | None]:
    """The gRPC status name of the call (``"OK"``) and its result when it succeeded."""
    try:
        return "OK", call()
    except HubClientError as error:
        return error.status or type(error).__name__, None


def _refusal(call: Callable[[], object]) -> str:
    """The gRPC status name of a refused call, or ``"OK"``."""
    return _attempt(call)[0]


# ---------------------------------------------------------------------------------- a /16


SPACE = "198.18.0.0/16"
"""RFC 2544 benchmarking addresses: the attack handles them as strings, never contacts them."""
OTHERS = ("m1", "m2", "m3")
PER_MEMBER = 2_000
DENSE_CAPACITY, DENSE_FORUM_FPR = 2_000, 0.31
"""Filters at capacity at 1 % per filter: the insider's filter has false positives in the /16."""
ALL_THREE = 150
"""Addresses all three other members hold (a campaign every one of them sees)."""
EACH_PAIR = 150
"""Addresses each pair of them holds besides."""
Mask = npt.NDArray[np.bool_]


@dataclass
class AddressForum:
    """Three members' and the insider's addresses of the /16, their tokens and filters."""

    params: BloomParams
    addresses: list[str]
    tokens: TokenArray
    """The tokens of every address of the /16, in address order."""
    holdings: dict[str, Mask]
    """Member → which addresses of the /16 it holds (the insider's are its own values)."""
    filters: dict[str, BloomFilter] = field(default_factory=dict)

    def token_bytes(self, index: int | npt.NDArray[np.int64] | slice) -> bytes:
        return self.tokens[index].astype("<u8").tobytes()

    def holders(self) -> npt.NDArray[np.int64]:
        """Per address: how many of the three other members hold it."""
        counts: npt.NDArray[np.int64] = np.sum(
            [self.holdings[name] for name in OTHERS], axis=0, dtype=np.int64
        )
        return counts

    def filter_holders(self) -> npt.NDArray[np.int64]:
        """Per address: how many of the three other members' *filters* hold its token — what
        the hub counts (the holders, plus those filters' false positives)."""
        counts: npt.NDArray[np.int64] = np.sum(
            [self.filters[name].contains_tokens(self.tokens) for name in OTHERS],
            axis=0,
            dtype=np.int64,
        )
        return counts

    def filter_of(self, held: Mask) -> BloomFilter:
        bloom = BloomFilter(self.params)
        bloom.add_tokens(self.tokens[held])
        bloom.count = int(held.sum())
        return bloom


def address_forum(params: BloomParams, seed: int) -> AddressForum:
    """Three members' 2,000 addresses each (150 all three hold, 150 per pair, 1,550 their own)
    and the insider's 2,000, drawn independently (so some are also the others')."""
    rng = np.random.default_rng(seed)
    addresses = [str(address) for address in ipaddress.ip_network(SPACE)]
    canonicalise = get_kind(IP).canonicalise
    assert all(canonicalise(a) == a for a in addresses[::4099])
    order = rng.permutation(len(addresses))
    holdings = {name: np.zeros(len(addresses), dtype=np.bool_) for name in OTHERS}
    at = 0

    def take(count: int, names: Sequence[str]) -> None:
        nonlocal at
        for name in names:
            holdings[name][order[at : at + count]] = True
        at += count

    take(ALL_THREE, OTHERS)
    for pair in ((0, 1), (0, 2), (1, 2)):
        take(EACH_PAIR, [OTHERS[i] for i in pair])
    for name in OTHERS:
        take(PER_MEMBER - ALL_THREE - 2 * EACH_PAIR, [name])
    own = np.zeros(len(addresses), dtype=np.bool_)
    own[rng.choice(len(addresses), size=PER_MEMBER, replace=False)] = True
    holdings[INSIDER] = own
    secret = forum_secret(seed)
    tokens = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, IP)).tokens(addresses)
    forum = AddressForum(params, addresses, tokens, holdings)
    for name, held in holdings.items():
        forum.filters[name] = forum.filter_of(held)
    return forum


def old_vector_flags(forum: AddressForum, needed: int) -> Mask:
    """What the removed design gave the insider: ``R = C − B_own``, the other members' bits
    counted per position; an address is read off as held by ≥ ``needed`` others when all its
    ``k`` positions count at least ``needed``."""
    counts = np.zeros(forum.params.m, dtype=np.int32)
    for name in OTHERS:
        counts += np.unpackbits(forum.filters[name].bits, bitorder="little")
    positions = bit_positions(forum.tokens, forum.params.m, forum.params.k)
    flags: Mask = counts[positions].min(axis=0) >= needed
    return flags


def resolve_all(client: HubClient, tokens: bytes, batch: int) -> ResolveResult | None:
    """Ask about ``tokens`` in requests of ``batch`` tokens; one result for them all."""
    parts = []
    for start in range(0, len(tokens), batch * TOKEN_BYTES):
        parts.append(client.resolve(IP, KEY_ID, tokens[start : start + batch * TOKEN_BYTES]))
    if not parts:
        return None
    return ResolveResult(
        kind=IP,
        key_id=KEY_ID,
        quorum=parts[-1].quorum,
        members=parts[-1].members,
        status=np.concatenate([p.status for p in parts]),
        others=np.concatenate([p.others for p in parts]),
        holder_names=(),
        holders=None,
        submission_tokens=parts[-1].submission_tokens,
        submission_budget=parts[-1].submission_budget,
        day_tokens=parts[-1].day_tokens,
        day_budget=parts[-1].day_budget,
        budget_frees_at=parts[-1].budget_frees_at,
        computed_at=parts[-1].computed_at,
    )


def honest_members(hub: RunningHub, forum: AddressForum) -> None:
    """The three members submit, resolve their own addresses and confirm the shared ones."""
    for name in OTHERS:
        submit_filter(hub.client(name), forum.filters[name], IP)
    for name in OTHERS:
        client = hub.client(name)
        own = np.flatnonzero(forum.holdings[name])
        answers = client.resolve(IP, KEY_ID, forum.token_bytes(own))
        shared = own[answers.others > 0]
        client.confirm(
            IP, KEY_ID, [ConfirmedToken(token=forum.token_bytes(i)) for i in shared.tolist()]
        )


# ---------------------------------------------------------------------------------- enumeration


@dataclass(frozen=True, slots=True)
class EnumerationReport:
    capacity: int
    forum_fpr: float
    max_members: int
    m: int
    k: int
    quorum: int
    space: int
    others_distinct: int
    """Addresses at least one of the three others holds."""
    learnable: int
    """Addresses held by ≥ quorum − 1 others: what a member holding them would be told."""
    own: int
    own_false_positives: int
    """Other addresses of the /16 the insider's own filter holds."""
    before_recovered: int
    """Old design: addresses held by ≥ quorum − 1 others the insider read off its vector."""
    before_false_flags: int
    no_submission_resolve: str
    no_submission_confirm: str
    whole_space: str
    """Status of one Resolve of all 65,536 tokens."""
    whole_space_answered: int
    batch: int
    answered: int
    not_held: int
    over_budget: int
    answered_most: int
    """Most distinct tokens answered against one submission (≤ its declared count)."""
    declared: int
    nonzero: int
    """Addresses the insider got a non-zero answer for, all RPCs together."""
    nonzero_own: int
    nonzero_beyond_own: int
    nonzero_beyond_own_and_false_positives: int
    """Must be 0: anything here is a leak."""
    answers_exact: bool
    """Every answer equals the oracle: the other filters holding the token, 0 below quorum − 1."""
    other_filter_false_positives: int
    """Answered addresses where another member's filter holds a token it was not given."""
    others_fpr: float
    """The largest false-positive rate among the other members' filters (``fpr_at_fill``)."""
    confirm_offered: int
    confirm_accepted: int
    confirm_equals_resolve: bool
    """Each Confirm batch accepted exactly its tokens with a non-zero Resolve answer."""
    matches: int
    matches_outside_nonzero: int
    status_member: str
    status_submissions: int
    status_foreign: int
    replace_within_interval: str


def enumeration_attack(
    directory: Path,
    seed: int = SEED,
    *,
    capacity: int = DEFAULT_CAPACITY,
    forum_fpr: float = DEFAULT_FORUM_FPR,
    quorum: int = 2,
    batch: int = 4_096,
) -> EnumerationReport:
    """The insider with its own 2,000 addresses tries every member RPC on the whole /16
    (Resolve and Confirm in batches of ``batch`` tokens, at most the capacity)."""
    batch = min(batch, capacity)
    params = BloomParams.for_forum(IP, KEY_ID, capacity, forum_fpr, DEFAULT_MAX_MEMBERS)
    forum = address_forum(params, seed)
    holders = forum.holders()
    filter_holders = forum.filter_holders()
    own = forum.holdings[INSIDER]
    own_filter = forum.filters[INSIDER]
    false_positive = own_filter.contains_tokens(forum.tokens) & ~own
    truth = holders >= quorum - 1
    every = forum.token_bytes(slice(None))
    n = len(forum.addresses)
    with loopback_hub(
        directory,
        [*OTHERS, INSIDER],
        kind=IP,
        capacity=capacity,
        forum_fpr=forum_fpr,
        quorum=quorum,
    ) as hub:
        insider = hub.client(INSIDER)
        assert insider.get_parameters().bloom[IP].bloom_params() == params
        honest_members(hub, forum)
        no_resolve = _refusal(lambda: insider.resolve(IP, KEY_ID, every[: 100 * TOKEN_BYTES]))
        no_confirm = _refusal(
            lambda: insider.confirm(IP, KEY_ID, [ConfirmedToken(token=every[:TOKEN_BYTES])])
        )
        submit_filter(insider, own_filter, IP)

        whole, whole_result = _attempt(lambda: insider.resolve(IP, KEY_ID, every))
        result = resolve_all(insider, every, batch)
        assert result is not None
        confirmed = 0
        confirm_equal = True
        for start in range(0, n, batch):
            chunk = range(start, min(start + batch, n))
            outcome = insider.confirm(
                IP, KEY_ID, [ConfirmedToken(token=forum.token_bytes(i)) for i in chunk]
            )
            confirmed += outcome.accepted
            confirm_equal &= outcome.accepted == int(np.count_nonzero(result.others[chunk]))
        matches = insider.list_matches(IP).indicators
        name, own_submissions = insider.status()
        rng = np.random.default_rng(seed + 1)
        claims = np.zeros(n, dtype=np.bool_)
        claims[rng.choice(np.flatnonzero(~own), PER_MEMBER, replace=False)] = True
        replaced = _refusal(lambda: submit_filter(insider, forum.filter_of(claims), IP))

    answers = [result] + ([whole_result] if whole_result is not None else [])
    nonzero = np.zeros(n, dtype=np.bool_)
    exact = True
    answered_most = 0
    for answer in answers:
        nonzero |= answer.others > 0
        answered = answer.status == TokenStatus.ANSWERED
        expected = np.where(answered & (filter_holders >= quorum - 1), filter_holders, 0)
        exact &= bool(np.array_equal(answer.others, expected))
        exact &= bool(np.all(answered <= own_filter.contains_tokens(forum.tokens)))
        answered_most = max(answered_most, answer.submission_tokens)
    answered = result.status == TokenStatus.ANSWERED
    index = {forum.token_bytes(i): i for i in np.flatnonzero(nonzero).tolist()}
    return EnumerationReport(
        capacity=capacity,
        forum_fpr=forum_fpr,
        max_members=DEFAULT_MAX_MEMBERS,
        m=params.m,
        k=params.k,
        quorum=quorum,
        space=n,
        others_distinct=int(np.count_nonzero(holders)),
        learnable=int(np.count_nonzero(truth)),
        own=int(own.sum()),
        own_false_positives=int(false_positive.sum()),
        before_recovered=int(np.count_nonzero(old_vector_flags(forum, quorum - 1) & truth)),
        before_false_flags=int(np.count_nonzero(old_vector_flags(forum, quorum - 1) & ~truth)),
        no_submission_resolve=no_resolve,
        no_submission_confirm=no_confirm,
        whole_space=whole,
        whole_space_answered=0
        if whole_result is None
        else whole_result.count(TokenStatus.ANSWERED),
        batch=batch,
        answered=int(answered.sum()),
        not_held=result.count(TokenStatus.NOT_HELD),
        over_budget=result.count(TokenStatus.OVER_BUDGET),
        answered_most=answered_most,
        declared=own_filter.count,
        nonzero=int(nonzero.sum()),
        nonzero_own=int((nonzero & own).sum()),
        nonzero_beyond_own=int((nonzero & ~own).sum()),
        nonzero_beyond_own_and_false_positives=int((nonzero & ~own & ~false_positive).sum()),
        answers_exact=exact,
        other_filter_false_positives=int(np.count_nonzero(answered & (filter_holders != holders))),
        others_fpr=max(params.fpr_at_fill(forum.filters[name].fill()) for name in OTHERS),
        confirm_offered=n,
        confirm_accepted=confirmed,
        confirm_equals_resolve=confirm_equal,
        matches=len(matches),
        matches_outside_nonzero=sum(1 for match in matches if match.token not in index),
        status_member=name,
        status_submissions=len(own_submissions),
        status_foreign=sum(1 for s in own_submissions if s.member != INSIDER),
        replace_within_interval=replaced,
    )


# ---------------------------------------------------------------------------------- claiming


@dataclass(frozen=True, slots=True)
class ClaimRound:
    declared: int
    replace_status: str
    answered: int
    over_budget: int
    learned: int
    """Claimed addresses answered with a non-zero count: the others' addresses learned."""
    submission_tokens: int
    day_tokens: int
    budget_frees_in: float | None
    """Seconds from the first question of the day to ``budget_frees_at`` (≈ 86,400)."""


@dataclass(frozen=True, slots=True)
class ClaimClass:
    others: int
    """How many other members really hold these claimed, answered addresses."""
    claims: int
    nonzero: int
    exact: int
    """Answered with the true number of other holders (0 below quorum − 1)."""


@dataclass(frozen=True, slots=True)
class ClaimReport:
    capacity: int
    quorum: int
    m: int
    k: int
    claim_size: int
    own_answered: int
    rounds: list[ClaimRound]
    day_answered: int
    """Distinct tokens answered in the day, own and claimed, across every submission."""
    claims_answered: int
    learned: int
    """Others' addresses (not its own) the insider learned in the day by claiming."""
    learnable: int
    """Addresses outside its own held by ≥ quorum − 1 others."""
    population: int
    """Addresses outside its own (what claims are drawn from)."""
    expected: float
    low: int
    high: int
    """Hypergeometric interval of ``learned`` at p < ALPHA."""
    hard_bound: int
    """``capacity`` − own answered: no day can exceed it, whatever the claims."""
    answers_exact: bool
    classes: list[ClaimClass]
    days_for_space: int
    """Days to have every address of the /16 answered once at this rate."""
    review_flags: tuple[str, ...]


def claiming_attack(
    directory: Path,
    seed: int = SEED,
    *,
    capacity: int = DEFAULT_CAPACITY,
    quorum: int = 2,
    claim_size: int = PER_MEMBER,
) -> ClaimReport:
    """After asking about its own 2,000 addresses, the insider replaces its filter with
    ``claim_size`` fresh addresses it does not hold and asks about them, round after round,
    until a round is refused for the day's budget (replace interval 0: no other limit)."""
    params = BloomParams.for_forum(IP, KEY_ID, capacity, DEFAULT_FORUM_FPR, DEFAULT_MAX_MEMBERS)
    forum = address_forum(params, seed)
    holders = forum.holders()
    filter_holders = forum.filter_holders()
    own = forum.holdings[INSIDER]
    rng = np.random.default_rng(seed + 2)
    order = rng.permutation(np.flatnonzero(~own))
    rounds: list[ClaimRound] = []
    learned = np.zeros(len(forum.addresses), dtype=np.bool_)
    answered = np.zeros(len(forum.addresses), dtype=np.bool_)
    exact = True
    first_asked: datetime | None = None
    with loopback_hub(
        directory,
        [*OTHERS, INSIDER],
        kind=IP,
        capacity=capacity,
        forum_fpr=DEFAULT_FORUM_FPR,
        quorum=quorum,
        replace_interval_seconds=0,
    ) as hub:
        honest_members(hub, forum)
        insider = hub.client(INSIDER)
        submit_filter(insider, forum.filters[INSIDER], IP)
        mine = np.flatnonzero(own)
        first_asked = datetime.now(UTC)
        answer = insider.resolve(IP, KEY_ID, forum.token_bytes(mine))
        own_answered = answer.count(TokenStatus.ANSWERED)
        for start in range(0, len(order), claim_size):
            claims = order[start : start + claim_size]
            held = np.zeros(len(forum.addresses), dtype=np.bool_)
            held[claims] = True
            status = _refusal(lambda held=held: submit_filter(insider, forum.filter_of(held), IP))  # type: ignore[misc]
            answer = insider.resolve(IP, KEY_ID, forum.token_bytes(claims))
            ok = answer.status == TokenStatus.ANSWERED
            expected = np.where(
                ok & (filter_holders[claims] >= quorum - 1), filter_holders[claims], 0
            )
            exact &= bool(np.array_equal(answer.others, expected))
            answered[claims[ok]] = True
            learned[claims[answer.others > 0]] = True
            frees = answer.budget_frees_at
            rounds.append(
                ClaimRound(
                    declared=len(claims),
                    replace_status=status,
                    answered=int(ok.sum()),
                    over_budget=answer.count(TokenStatus.OVER_BUDGET),
                    learned=int(np.count_nonzero(answer.others)),
                    submission_tokens=answer.submission_tokens,
                    day_tokens=answer.day_tokens,
                    budget_frees_in=(
                        None if frees is None else (frees - first_asked).total_seconds()
                    ),
                )
            )
            if not ok.any():
                break  # the day's budget is spent: one refused round shows it
        flags = review_flags(hub.engine, IP, INSIDER)
    truth = holders >= quorum - 1
    learnable = int(np.count_nonzero(truth & ~own))
    population = int(np.count_nonzero(~own))
    claims_answered = int(answered.sum())
    low, high = hypergeometric_interval(population, learnable, claims_answered)
    expected_others = np.where(holders >= quorum - 1, holders, 0)
    classes = [
        ClaimClass(
            others=c,
            claims=int(np.count_nonzero(answered & (holders == c))),
            nonzero=int(np.count_nonzero(answered & (holders == c) & learned)),
            exact=int(
                np.count_nonzero(
                    answered
                    & (holders == c)
                    & (np.where(learned, filter_holders, 0) == expected_others)
                )
            ),
        )
        for c in range(len(OTHERS) + 1)
    ]
    return ClaimReport(
        capacity=capacity,
        quorum=quorum,
        m=params.m,
        k=params.k,
        claim_size=claim_size,
        own_answered=own_answered,
        rounds=rounds,
        day_answered=own_answered + claims_answered,
        claims_answered=claims_answered,
        learned=int(learned.sum()),
        learnable=learnable,
        population=population,
        expected=claims_answered * learnable / population,
        low=low,
        high=high,
        hard_bound=capacity - own_answered,
        answers_exact=exact,
        classes=classes,
        days_for_space=math.ceil(population / (capacity - own_answered)),
        review_flags=flags,
    )


# ---------------------------------------------------------------------------- differential


@dataclass(frozen=True, slots=True)
class DifferentialReport:
    asked: int
    changed_values: int
    """Addresses held in one hub state and not the other (none in the requester's filter)."""
    precondition: bool
    """The other filters agree on every token the requester's filter holds in both states."""
    answered: int
    identical: bool
    """The two Resolve response streams are byte for byte the same (computation time aside)."""
    control_changed_values: int
    """The control: a third state where another member also holds some of the requester's own
    addresses."""
    control_differs: bool
    """…whose answers do differ: the comparison can see a change where there is one."""


def raw_resolve(target: str, credential: str, tokens: bytes, batch: int) -> list[bytes]:
    """Every response message of Resolve requests of ``batch`` tokens, serialized, with the
    summary's ``computed_at`` cleared (the only field a clock sets)."""
    out: list[bytes] = []
    with grpc.insecure_channel(target) as channel:
        stub = wire.member_stub(channel)
        metadata = (("authorization", f"Bearer {credential}"),)
        for start in range(0, len(tokens), batch * TOKEN_BYTES):
            requests = wire.resolve_requests(
                IP, KEY_ID, tokens[start : start + batch * TOKEN_BYTES], 1 << 20
            )
            for message in stub.Resolve(requests, metadata=metadata, timeout=60):
                if message.WhichOneof("part") == "summary":
                    message.summary.ClearField("computed_at")
                out.append(message.SerializeToString(deterministic=True))
    return out


def _answers_of(directory: Path, forum: AddressForum, batch: int) -> tuple[list[bytes], int]:
    """The insider's raw answers for the whole /16 from a hub holding ``forum``'s filters, and
    how many of its first batch were answered."""
    every = forum.token_bytes(slice(None))
    with loopback_hub(
        directory,
        [*OTHERS, INSIDER],
        kind=IP,
        capacity=DEFAULT_CAPACITY,
        forum_fpr=DEFAULT_FORUM_FPR,
    ) as hub:
        for name in (*OTHERS, INSIDER):
            submit_filter(hub.client(name), forum.filters[name], IP)
        stream = raw_resolve(hub.target, hub.credentials[INSIDER], every, batch)
        first = hub.client(INSIDER).resolve(IP, KEY_ID, every[: batch * TOKEN_BYTES])
    return stream, first.count(TokenStatus.ANSWERED)


def differential_attack(
    directory: Path, seed: int = SEED, batch: int = 8_192
) -> DifferentialReport:
    """Hub A and hub B differ only in other members' values outside the insider's filter: the
    insider asks both the same questions (the whole /16) and compares the answers byte for
    byte. Hub C (the control) differs from A in values inside it."""
    params = BloomParams.for_forum(
        IP, KEY_ID, DEFAULT_CAPACITY, DEFAULT_FORUM_FPR, DEFAULT_MAX_MEMBERS
    )
    forum_a, forum_b, forum_c = (address_forum(params, seed) for _ in range(3))
    insider_holds = forum_a.filters[INSIDER].contains_tokens(forum_a.tokens)
    rng = np.random.default_rng(seed + 3)
    outside = np.flatnonzero(~insider_holds)
    # m2 gains 500 addresses; m3 trades 300 of its own for others: none in the insider's filter.
    gained = rng.choice(outside[~forum_b.holdings["m2"][outside]], size=500, replace=False)
    forum_b.holdings["m2"][gained] = True
    mine = np.flatnonzero(forum_b.holdings["m3"] & ~insider_holds)
    dropped = rng.choice(mine, size=300, replace=False)
    added = rng.choice(outside[~forum_b.holdings["m3"][outside]], size=300, replace=False)
    forum_b.holdings["m3"][dropped] = False
    forum_b.holdings["m3"][added] = True
    # The control: m2 also holds 50 of the insider's own addresses it did not hold.
    inside = np.flatnonzero(forum_c.holdings[INSIDER] & ~forum_c.holdings["m2"])
    forum_c.holdings["m2"][rng.choice(inside, size=50, replace=False)] = True
    for forum in (forum_b, forum_c):
        for name in ("m2", "m3"):
            forum.filters[name] = forum.filter_of(forum.holdings[name])

    def changed(forum: AddressForum) -> int:
        return sum(
            int(np.count_nonzero(forum_a.holdings[name] != forum.holdings[name])) for name in OTHERS
        )

    precondition = all(
        np.array_equal(
            forum_a.filters[name].contains_tokens(forum_a.tokens)[insider_holds],
            forum_b.filters[name].contains_tokens(forum_b.tokens)[insider_holds],
        )
        for name in OTHERS
    )
    streams = []
    answered = 0
    for label, forum in (("a", forum_a), ("b", forum_b), ("c", forum_c)):
        (directory / label).mkdir()
        stream, answered = _answers_of(directory / label, forum, batch)
        streams.append(stream)
    return DifferentialReport(
        asked=len(forum_a.addresses),
        changed_values=changed(forum_b),
        precondition=precondition,
        answered=answered,
        identical=streams[0] == streams[1],
        control_changed_values=changed(forum_c),
        control_differs=streams[0] != streams[2],
    )


# ---------------------------------------------------------------------------------- poisoning


def honest_filter(params: BloomParams, count: int, seed: int) -> BloomFilter:
    """A filter of ``count`` random tokens (what any member's real filter looks like)."""
    rng = np.random.default_rng(seed)
    bloom = BloomFilter(params)
    bloom.add_tokens(rng.integers(0, 1 << 64, size=(count, 2), dtype=np.uint64))
    return bloom


def _from_positions(
    params: BloomParams, positions: np.ndarray[Any, Any], count: int
) -> BloomFilter:
    unpacked = np.zeros(params.m, dtype=np.uint8)
    unpacked[positions] = 1
    return BloomFilter(params, np.packbits(unpacked, bitorder="little"), count)


def _tile(
    params: BloomParams, target: int, size: int, rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A random ``size``-byte tile with the density ``target`` set bits need, repeated."""
    per_tile = round(target * size * 8 / params.m)
    unpacked = np.zeros(size * 8, dtype=np.uint8)
    unpacked[rng.choice(size * 8, size=per_tile, replace=False)] = 1
    tile = np.packbits(unpacked, bitorder="little")
    return np.resize(tile, params.nbytes).astype(np.uint8)


def poison_filters(params: BloomParams, declared: int, seed: int = SEED) -> dict[str, BloomFilter]:
    """Hostile filters. The crafted ones set exactly the number of bits ``declared`` honest items
    would, so only the pattern checks can tell them apart."""
    rng = np.random.default_rng(seed)
    target = round(params.expected_fill(declared) * params.m)
    honest = honest_filter(params, declared, seed)
    heavy = honest_filter(params, min(params.capacity, declared * 6), seed + 1)
    stride = params.m // target
    quarter = params.m // 4
    whole_bytes = np.flatnonzero(np.zeros(params.nbytes) == 0)
    chosen_bytes = rng.choice(whole_bytes, size=target // 8, replace=False)
    byte_blocky = np.zeros(params.nbytes, dtype=np.uint8)
    byte_blocky[chosen_bytes] = 0xFF
    tiles = {size: _tile(params, target, size, rng) for size in (64, 512)}
    targeted = BloomFilter(params, honest.bits.copy(), declared)
    # Make 5,000 guessed values "match" everyone: set their bits on top of an honest filter.
    guessed = rng.integers(0, 1 << 64, size=(5_000, 2), dtype=np.uint64)
    extra = BloomFilter(params)
    extra.add_tokens(guessed)
    targeted.bits |= extra.bits
    return {
        "saturated (all ones, declared = capacity)": BloomFilter(
            params, np.full(params.nbytes, 0xFF, dtype=np.uint8), params.capacity
        ),
        "over capacity (declared = capacity + 1)": BloomFilter(
            params, honest.bits.copy(), params.capacity + 1
        ),
        f"under-declared ({heavy.count} items declared as {declared})": BloomFilter(
            params, heavy.bits.copy(), declared
        ),
        "targeted (5,000 guesses' bits added, count unchanged)": targeted,
        "periodic: evenly spaced bits, right popcount": _from_positions(
            params, np.arange(target) * stride, declared
        ),
        "periodic: a random 64-byte tile repeated, right popcount": BloomFilter(
            params, tiles[64], declared
        ),
        "periodic: a random 512-byte tile repeated, right popcount": BloomFilter(
            params, tiles[512], declared
        ),
        "blocky: right popcount, all in the first quarter": _from_positions(
            params, rng.choice(quarter, size=target, replace=False), declared
        ),
        "blocky: whole 0xFF bytes, right popcount": BloomFilter(params, byte_blocky, declared),
    }


@dataclass(frozen=True, slots=True)
class PoisonResult:
    case: str
    declared: int
    fill: float
    check_filter: str
    """``rejected: <reason>`` or ``ACCEPTED``."""
    hub_status: str
    """The hub's gRPC status for Submit (INVALID_ARGUMENT expected)."""
    trace_left: bool
    """Whether the refused upload changed the submissions or another member's answers."""


@dataclass(frozen=True, slots=True)
class PoisonReport:
    declared: int
    results: list[PoisonResult]
    honest_accepted: bool


def poison_attack(directory: Path, seed: int = SEED, declared: int = 2_000) -> PoisonReport:
    forum = make_forum(FORUM, seed)
    params = forum.params
    cases = poison_filters(params, declared, seed)
    results: list[PoisonResult] = []
    with loopback_hub(
        directory, MEMBERS, capacity=FORUM.capacity, forum_fpr=FORUM.forum_fpr, quorum=2
    ) as hub:
        for name in MEMBERS[:3]:
            submit_filter(hub.client(name), forum.filters[name])
        observer, attacker = hub.client(MEMBERS[0]), hub.client(MEMBERS[3])
        asked = forum.tokens_of(MEMBERS[0])

        def answers() -> tuple[bytes, bytes]:
            result = observer.resolve(KIND, KEY_ID, asked)
            return result.status.tobytes(), result.others.tobytes()

        before = answers()
        submissions = stored_submissions(hub.engine)
        for case, bloom in cases.items():
            try:
                check_filter(bloom, params)
                verdict = "ACCEPTED"
            except SketchError as error:
                verdict = f"rejected: {error}"
            status = _refusal(lambda bloom=bloom: submit_filter(attacker, bloom))  # type: ignore[misc]
            trace = stored_submissions(hub.engine) != submissions or answers() != before
            results.append(
                PoisonResult(
                    case=case,
                    declared=bloom.count,
                    fill=bloom.fill(),
                    check_filter=verdict,
                    hub_status=status,
                    trace_left=trace,
                )
            )
        honest_status = _refusal(lambda: submit_filter(attacker, forum.filters[MEMBERS[3]]))
    return PoisonReport(declared=declared, results=results, honest_accepted=honest_status == "OK")


# ---------------------------------------------------------------------------------- report


def run(seed: int = SEED) -> dict[str, Any]:
    started = time.perf_counter()
    dictionary = [dictionary_attack(setting, seed) for setting in (FORUM, DENSE)]
    with tempfile.TemporaryDirectory(prefix="sigshare-attacks-") as temporary:
        base = Path(temporary)
        for name in ("enumeration", "dense", "claim-2", "claim-3", "differential", "poison"):
            (base / name).mkdir()
        enumeration = [
            enumeration_attack(base / "enumeration", seed),
            enumeration_attack(
                base / "dense", seed, capacity=DENSE_CAPACITY, forum_fpr=DENSE_FORUM_FPR
            ),
        ]
        claims = [
            claiming_attack(base / f"claim-{quorum}", seed, quorum=quorum) for quorum in (2, 3)
        ]
        differential = differential_attack(base / "differential", seed)
        poison = poison_attack(base / "poison", seed)
    return {
        "seed": seed,
        "alpha": ALPHA,
        "dictionary": [asdict(report) for report in dictionary],
        "enumeration": [asdict(report) for report in enumeration],
        "claiming": [asdict(report) for report in claims],
        "differential": asdict(differential),
        "poison": asdict(poison),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _print_dictionary(document: dict[str, Any]) -> None:
    for report in document["dictionary"]:
        print()
        print(
            f"== Dictionary attack, {report['setting']}: m={report['m']} k={report['k']} "
            f"capacity={report['capacity']}, {report['members']} members"
        )
        print(
            f"   dictionary {report['dictionary']:,} candidates; true values "
            f"{report['true_values']:,} ({report['distinct_true']:,} distinct); mean fill "
            f"{report['fill']:.4f}; fill^k = {report['false_positive_rate']:.3e}; expected "
            f"false positives over the dictionary {report['expected_false_positives']:.2f}"
        )
        print(
            f"   {'strategy':<36} {'secret':>6} {'flagged':>8} {'true':>6} {'chance':>8} "
            f"{'bound':>6} {'p-value':>8} {'recall':>7} {'beyond':>6}"
        )
        for row in report["results"]:
            print(
                f"   {row['strategy']:<36} {'yes' if row['uses_secret'] else 'no':>6} "
                f"{row['flagged']:>8,} {row['flagged_true']:>6,} {row['expected_true']:>8.2f} "
                f"{row['bound_true']:>6} {row['p_value']:>8.2g} {row['recall']:>7.3f} "
                f"{row['beyond_chance']:>6}"
            )


def _print_enumeration(e: dict[str, Any]) -> None:
    print()
    print(
        f"== Insider enumeration of {SPACE} ({e['space']:,} addresses; real hub on loopback; "
        f"capacity {e['capacity']:,}, forum FPR {e['forum_fpr']:g}, {e['max_members']} members "
        f"max, m={e['m']:,} k={e['k']}, quorum {e['quorum']})"
    )
    print(
        f"   3 members x {PER_MEMBER:,} addresses: {e['others_distinct']:,} distinct, "
        f"{e['learnable']:,} held by >= quorum-1 others; the insider holds {e['own']:,} "
        f"(its filter's false positives in the /16: {e['own_false_positives']})"
    )
    print(
        f"   before (resolution vector, tokenise the /16 offline): {e['before_recovered']:,} of "
        f"{e['learnable']:,} others' addresses read off (+{e['before_false_flags']} false flags)"
    )
    print(
        f"   now: addresses with a non-zero answer {e['nonzero']:,} = own {e['nonzero_own']:,} "
        f"+ beyond own {e['nonzero_beyond_own']} (not own and not a false positive: "
        f"{e['nonzero_beyond_own_and_false_positives']}); answers exact: {e['answers_exact']} "
        f"(other filters' false positives among them: {e['other_filter_false_positives']}, "
        f"their FPR <= {e['others_fpr']:.2g})"
    )
    print(
        f"   without a submission: Resolve {e['no_submission_resolve']}, Confirm "
        f"{e['no_submission_confirm']}; Resolve of all {e['space']:,} tokens at once: "
        f"{e['whole_space']} ({e['whole_space_answered']} answered)"
    )
    print(
        f"   Resolve in batches of {e['batch']:,}: answered {e['answered']:,} (at most "
        f"{e['answered_most']:,} per submission, declared {e['declared']:,}), not held "
        f"{e['not_held']:,}, over budget {e['over_budget']}"
    )
    print(
        f"   Confirm of all {e['confirm_offered']:,} tokens: {e['confirm_accepted']} accepted "
        f"(= its non-zero Resolve answers, batch by batch: {e['confirm_equals_resolve']}); "
        f"ListMatches: {e['matches']} indicators, {e['matches_outside_nonzero']} outside them; "
        f"GetStatus: {e['status_submissions']} submission(s), {e['status_foreign']} not its own"
    )
    print(f"   replacing its filter within the replace interval: {e['replace_within_interval']}")


def _print_insider(document: dict[str, Any]) -> None:
    for e in document["enumeration"]:
        _print_enumeration(e)
    for c in document["claiming"]:
        print()
        print(
            f"== Claiming, quorum {c['quorum']} (capacity {c['capacity']:,}, rounds of "
            f"{c['claim_size']:,} claimed addresses, replace interval 0)"
        )
        print(
            f"   own addresses answered first: {c['own_answered']:,}; claims answered in the day: "
            f"{c['claims_answered']:,} (hard bound {c['hard_bound']:,}); day total "
            f"{c['day_answered']:,} <= capacity {c['capacity']:,}"
        )
        print(
            f"   others' addresses learned in 24 h: {c['learned']:,} (expected "
            f"{c['expected']:.1f}, interval {c['low']}-{c['high']} at p<{ALPHA:g}; "
            f"{c['learnable']:,} learnable of {c['population']:,}); whole /16: "
            f"{c['days_for_space']} days; answers exact: {c['answers_exact']}; review flags: "
            f"{', '.join(c['review_flags']) or 'none'}"
        )
        print(
            f"   {'round':>5} {'replace':>8} {'answered':>9} {'over':>6} {'learned':>8} "
            f"{'submission':>10} {'day':>7} {'frees in':>9}"
        )
        for number, r in enumerate(c["rounds"], start=1):
            frees = "" if r["budget_frees_in"] is None else f"{r['budget_frees_in'] / 3600:.2f} h"
            print(
                f"   {number:>5} {r['replace_status']:>8} {r['answered']:>9,} "
                f"{r['over_budget']:>6,} {r['learned']:>8,} {r['submission_tokens']:>10,} "
                f"{r['day_tokens']:>7,} {frees:>9}"
            )
        print(f"   {'others holding':>14} {'claims':>7} {'count > 0':>10} {'exact':>6}")
        for row in c["classes"]:
            print(
                f"   {row['others']:>14} {row['claims']:>7,} {row['nonzero']:>10,} "
                f"{row['exact']:>6,}"
            )
    d = document["differential"]
    print()
    print(
        f"== Differential: two hubs differing in {d['changed_values']} other-member values "
        f"outside the insider's filter (precondition holds: {d['precondition']}); "
        f"{d['asked']:,} tokens asked; Resolve answers byte-identical: {d['identical']}"
    )
    print(
        f"   control: {d['control_changed_values']} values inside it changed; answers differ: "
        f"{d['control_differs']}"
    )


def _print_table(document: dict[str, Any]) -> None:
    print(f"Privacy attack simulations (seed {document['seed']}, chance bound p < {ALPHA:g})")
    _print_dictionary(document)
    _print_insider(document)
    poison = document["poison"]
    print()
    print(
        f"== Poisoning (declared {poison['declared']} unless stated; honest resubmission "
        f"accepted: {poison['honest_accepted']})"
    )
    print(f"   {'case':<58} {'fill':>6} {'check_filter':>12} {'hub Submit':>17} {'trace':>5}")
    for row in poison["results"]:
        verdict = "ACCEPTED" if row["check_filter"] == "ACCEPTED" else "rejected"
        print(
            f"   {row['case']:<58} {row['fill']:>6.3f} {verdict:>12} {row['hub_status']:>17} "
            f"{'yes' if row['trace_left'] else 'no':>5}"
        )
    print()
    print(f"({document['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attacks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of every random choice")
    args = parser.parse_args(argv)
    document = run(args.seed)
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        _print_table(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
