"""``python -m bench.attacks [--json] [--seed N]``: privacy attack simulations and their figures.

Four attacks on the design, each measured and printed (see docs/threat-model.md):

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
3. **Member probing** against a real hub on loopback (quorum 3): a member without a submission
   gets no resolution; a member that inserts guesses into its own filter learns counts only for
   values at least ``quorum − 1`` others hold; the hub refuses confirmations of tokens outside the
   member's own filter.
4. **Poisoning**: saturated, over-capacity, under-declared and crafted-pattern filters are refused
   by :func:`sigshare.sketch.checks.check_filter` and by the hub's Submit (INVALID_ARGUMENT),
   leaving no submission behind and every other member's resolution unchanged.

Everything is derived from fixed seeds; the hub runs on a temporary SQLite file and 127.0.0.1.
The test suite (tests/security/test_privacy_attacks.py) asserts on the same functions.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
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
from typing import Any

import mmh3
import numpy as np
from sqlalchemy import Engine, func, select

from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy
from sigshare.client.hub_types import ConfirmedToken
from sigshare.hub.domain import Role
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import BoundServer, parse_listen
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.models import SubmissionRow
from sigshare.sketch.bloom import (
    BloomFilter,
    BloomParams,
    KeyedBloomFilter,
    resolve_tokens,
)
from sigshare.sketch.checks import check_filter
from sigshare.sketch.codec import encode_bloom
from sigshare.sketch.errors import SketchError
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.kinds import get_kind
from sigshare.sketch.prf import KeyedPRF, TokenArray, tokens_to_bytes

ALPHA = 1e-6
"""Chance a correct (secret-less) attacker exceeds the Binomial bound: the test's false alarm."""
KEY_ID = "epoch-1"
KIND = "email"
MEMBERS = ("m1", "m2", "m3", "m4")
PROBER = "prober"
QUORUM = 3
SEED = 20_250_301
_SETUP = "attack-setup"
_TIMEOUT = 30.0

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


# ---------------------------------------------------------------------------------- the forum


@dataclass(frozen=True, slots=True)
class Setting:
    """One forum shape: members each holding ``per_member`` values of a ``dictionary``."""

    name: str
    per_member: int
    dictionary: int
    capacity: int
    target_fpr: float
    members: tuple[str, ...] = MEMBERS


FORUM = Setting("forum default", 2_000, 20_000, 20_000, 1e-3)
"""The parameters a forum would publish (capacity 20,000 at FPR 10⁻³), members at 10 % of it."""
DENSE = Setting("dense: filters at capacity", 2_000, 20_000, 2_000, 1e-2)
"""Worst case for the members: every filter full, fill ≈ 0.5, chance level ≈ 0.8 % per value."""


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
    params = BloomParams.for_capacity(KIND, KEY_ID, setting.capacity, setting.target_fpr)
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


@dataclass
class LoopbackHub:
    engine: Engine
    server: BoundServer
    credentials: dict[str, str]
    clients: list[HubClient] = field(default_factory=list)

    def client(self, name: str) -> HubClient:
        client = HubClient(
            HubConnection(
                target=f"127.0.0.1:{self.server.port}",
                credential=self.credentials[name],
                insecure=True,
            ),
            retry=RetryPolicy(attempts=1),
        )
        self.clients.append(client)
        return client

    def submissions(self) -> int:
        with session_scope(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(SubmissionRow)) or 0)


@contextmanager
def loopback_hub(
    directory: Path, setting: Setting, names: Sequence[str], quorum: int = QUORUM
) -> Iterator[LoopbackHub]:
    """A migrated SQLite hub on 127.0.0.1 with ``names`` as members and ``email`` published."""
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        for name in names:
            _, credential = principals.add_principal(
                session, actor=_SETUP, name=name, role=Role.MEMBER, now=now
            )
            credentials[name] = credential.token
        parameters.set_kind_parameters(
            session,
            actor=_SETUP,
            kind=KIND,
            key_id=KEY_ID,
            capacity=setting.capacity,
            target_fpr=setting.target_fpr,
            quorum=quorum,
            now=now,
        )
    server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    hub = LoopbackHub(engine=engine, server=server, credentials=credentials)
    try:
        yield hub
    finally:
        for client in hub.clients:
            client.close()
        server.stop(0)
        engine.dispose()


def submit_filter(client: HubClient, bloom: BloomFilter) -> None:
    published = client.get_parameters().bloom[KIND]
    client.submit(
        sketch_format="bloom",
        kind=KIND,
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=bloom.count,
        payload=encode_bloom(bloom),
    )


def _refusal(call: Callable[[], object]) -> str:
    """The gRPC status name of a refused call, or ``"OK"``."""
    try:
        call()
    except HubClientError as error:
        return error.status or type(error).__name__
    return "OK"


# ---------------------------------------------------------------------------------- probing


@dataclass(frozen=True, slots=True)
class ProbeClass:
    others: int
    """How many other members really hold these guesses."""
    guesses: int
    resolved_nonzero: int
    """Guesses whose resolved count is above 0: what the prober learns."""
    resolved_exact: int
    """Guesses whose resolved count equals ``others`` (0 below quorum − 1)."""


@dataclass(frozen=True, slots=True)
class ProbeReport:
    quorum: int
    no_submission_resolution: str
    no_submission_confirm: str
    classes: list[ProbeClass]
    confirm_own_resolved: tuple[int, int]
    """(offered, accepted): guesses in the prober's filter that ≥ quorum − 1 others hold."""
    confirm_own_unresolved: tuple[int, int]
    """(offered, accepted): guesses in the prober's filter that fewer others hold."""
    confirm_not_in_filter: tuple[int, int]
    """(offered, accepted): tokens of values ≥ quorum − 1 others hold, absent from its filter."""


def probe_attack(directory: Path, seed: int = SEED, per_class: int = 200) -> ProbeReport:
    """A member (``prober``) guesses dictionary values, inserts them into its own filter, and
    reads what its resolution and the confirm step reveal, class by class of true holders."""
    forum = make_forum(FORUM, seed)
    holders = forum.holders()
    rng = np.random.default_rng(seed + 1)
    guesses: list[int] = []
    for others in range(len(MEMBERS) + 1):
        pool = np.flatnonzero(holders == others)
        take = min(per_class, pool.size)
        guesses += rng.choice(pool, size=take, replace=False).tolist()
    guessed = set(guesses)
    prf = forum.prf()
    with loopback_hub(directory, FORUM, [*MEMBERS, PROBER]) as hub:
        prober = hub.client(PROBER)
        no_resolution = _refusal(lambda: prober.download_resolution(KIND, KEY_ID))
        absent = [i for i in np.flatnonzero(holders >= QUORUM - 1).tolist() if i not in guessed]
        absent_tokens = [ConfirmedToken(token=prf.token_bytes(forum.canonical[i])) for i in absent]
        no_confirm = _refusal(lambda: prober.confirm(KIND, KEY_ID, absent_tokens[:10]))
        for name in MEMBERS:
            submit_filter(hub.client(name), forum.filters[name])
        bloom = KeyedBloomFilter(forum.params, prf)
        tokens = bloom.add([forum.canonical[i] for i in guesses])
        submit_filter(prober, bloom)
        resolution = prober.download_resolution(KIND, KEY_ID)
        counts = resolve_tokens(resolution.counts, forum.params, tokens)
        truth = holders[guesses]
        expected = np.where(truth >= QUORUM - 1, truth, 0)
        classes = [
            ProbeClass(
                others=others,
                guesses=int((truth == others).sum()),
                resolved_nonzero=int(((truth == others) & (counts > 0)).sum()),
                resolved_exact=int(((truth == others) & (counts == expected)).sum()),
            )
            for others in range(len(MEMBERS) + 1)
        ]
        token_bytes = tokens_to_bytes(tokens)
        resolved = [
            ConfirmedToken(token=t)
            for t, c in zip(token_bytes, truth, strict=True)
            if c >= QUORUM - 1
        ]
        unresolved = [
            ConfirmedToken(token=t)
            for t, c in zip(token_bytes, truth, strict=True)
            if c < QUORUM - 1
        ]
        not_in_filter = [
            t
            for t, i in zip(absent_tokens, absent, strict=True)
            if not bloom.contains_tokens(prf.tokens([forum.canonical[i]]))[0]
        ]
        outcome_unresolved = prober.confirm(KIND, KEY_ID, unresolved)
        outcome_absent = prober.confirm(KIND, KEY_ID, not_in_filter)
        outcome_resolved = prober.confirm(KIND, KEY_ID, resolved)
    return ProbeReport(
        quorum=QUORUM,
        no_submission_resolution=no_resolution,
        no_submission_confirm=no_confirm,
        classes=classes,
        confirm_own_resolved=(len(resolved), outcome_resolved.accepted),
        confirm_own_unresolved=(len(unresolved), outcome_unresolved.accepted),
        confirm_not_in_filter=(len(not_in_filter), outcome_absent.accepted),
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
    """Whether the refused upload changed the submissions or another member's resolution."""


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
    with loopback_hub(directory, FORUM, MEMBERS, quorum=2) as hub:
        for name in MEMBERS[:3]:
            submit_filter(hub.client(name), forum.filters[name])
        observer, attacker = hub.client(MEMBERS[0]), hub.client(MEMBERS[3])
        before = observer.download_resolution(KIND, KEY_ID).counts.copy()
        submissions = hub.submissions()
        for case, bloom in cases.items():
            try:
                check_filter(bloom, params)
                verdict = "ACCEPTED"
            except SketchError as error:
                verdict = f"rejected: {error}"
            status = _refusal(lambda bloom=bloom: submit_filter(attacker, bloom))  # type: ignore[misc]
            after = observer.download_resolution(KIND, KEY_ID).counts
            trace = hub.submissions() != submissions or not np.array_equal(before, after)
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
        (base / "probe").mkdir()
        (base / "poison").mkdir()
        probe = probe_attack(base / "probe", seed)
        poison = poison_attack(base / "poison", seed)
    return {
        "seed": seed,
        "alpha": ALPHA,
        "dictionary": [asdict(report) for report in dictionary],
        "probe": asdict(probe),
        "poison": asdict(poison),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _print_table(document: dict[str, Any]) -> None:
    print(f"Privacy attack simulations (seed {document['seed']}, chance bound p < {ALPHA:g})")
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
    probe = document["probe"]
    print()
    print(f"== Member probing (real hub on loopback, quorum {probe['quorum']})")
    print(f"   resolution without a submission: {probe['no_submission_resolution']}")
    print(f"   confirm without a submission:    {probe['no_submission_confirm']}")
    print(f"   {'others holding':>14} {'guesses':>8} {'count > 0':>10} {'exact':>6}")
    for row in probe["classes"]:
        print(
            f"   {row['others']:>14} {row['guesses']:>8} {row['resolved_nonzero']:>10} "
            f"{row['resolved_exact']:>6}"
        )
    for label, key in (
        ("own guesses held by ≥ quorum-1 others", "confirm_own_resolved"),
        ("own guesses held by < quorum-1 others", "confirm_own_unresolved"),
        ("tokens not in its own filter", "confirm_not_in_filter"),
    ):
        offered, accepted = probe[key]
        print(f"   confirm {label}: {accepted} of {offered} accepted")
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
