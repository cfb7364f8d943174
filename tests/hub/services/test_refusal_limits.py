"""Refused credentials are rate-limited per source address and audited in aggregate.

The limiter is tested directly with an injected clock (buckets, refill, windows, the LRU cap,
threads), then end to end through a running gRPC hub on both databases and through the
console's sign-in form. A limited source is refused *before* its credential is checked: a valid
credential from it is refused too, and the credential check is seen not to run.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sigshare.hub.domain import AuditEntry
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc import app as rpc_app
from sigshare.hub.rpc.auth import peer_source
from sigshare.hub.services import refusals
from sigshare.hub.services.refusals import (
    RefusalLimiter,
    RefusalPolicy,
    RefusalSummary,
    SummaryKind,
    source_key,
)
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.web import create_app
from sigshare.hub.web.routes import auth as web_auth
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import COORDINATOR, provision, running_hub

POLICY = RefusalPolicy(burst=3, per_minute=6, window_seconds=300, max_sources=100)
"""Three refusals at once, then one per 10 s; summaries per 5 minutes."""
REFILL = 10.0
A, B = "192.0.2.1", "198.51.100.7"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def summary(
    source: str, kind: SummaryKind, count: int, seconds: Any, limited: bool
) -> RefusalSummary:
    """A summary of the test limiter (channel ``t``); ``seconds`` may be a ``pytest.approx``."""
    return RefusalSummary("t", source, kind, count, seconds, limited)


class Recorded:
    def __init__(self, policy: RefusalPolicy = POLICY) -> None:
        self.clock = FakeClock()
        self.summaries: list[RefusalSummary] = []
        self.limiter = RefusalLimiter("t", self.summaries.append, policy, clock=self.clock)

    def attempt(self, source: str) -> bool:
        """One bad credential from ``source``, as the servers handle it; whether it was checked."""
        if self.limiter.admit(source) is not None:
            return False
        self.limiter.refused(source)
        return True


# ---------------------------------------------------------------------------------- the limiter


def test_a_burst_empties_the_bucket_of_its_source_only() -> None:
    r = Recorded()
    assert [r.attempt(A) for _ in range(5)] == [True, True, True, False, False]
    assert r.limiter.admit(A) == pytest.approx(REFILL)
    r.clock.advance(4)
    assert r.limiter.admit(A) == pytest.approx(REFILL - 4)
    assert r.limiter.admit(B) is None  # another source, never refused: not even tracked
    assert r.attempt(B)
    assert r.limiter.tracked == 2


def test_the_bucket_refills_at_the_policy_rate_up_to_the_burst() -> None:
    r = Recorded()
    for _ in range(3):
        r.attempt(A)
    r.clock.advance(REFILL / 2)
    assert r.limiter.admit(A) == pytest.approx(REFILL / 2)
    r.clock.advance(REFILL / 2)
    assert r.limiter.admit(A) is None
    assert [r.attempt(A) for _ in range(2)] == [True, False]  # one token, not more
    r.clock.advance(3600)  # refills to the burst and no further
    assert [r.attempt(A) for _ in range(4)] == [True, True, True, False]


def test_thousands_of_refusals_make_three_audit_summaries_per_window() -> None:
    r = Recorded()
    for _ in range(1000):
        r.attempt(A)
        r.clock.advance(0.1)  # 100 s in all: one refill every 10 s lets 10 more be checked
    assert r.summaries == [
        summary(A, SummaryKind.FIRST, 1, 0, False),
        summary(A, SummaryKind.LIMITED, 3, pytest.approx(0.2), True),
    ]
    r.clock.advance(300)  # the window closes; a sweep (any call) reports what it held
    assert r.limiter.admit(B) is None
    assert r.summaries[2:] == [summary(A, SummaryKind.WINDOW, 1000, 300, True)]
    assert r.limiter.tracked == 0  # full bucket, nothing to report: forgotten


def test_a_new_window_starts_with_a_first_entry() -> None:
    r = Recorded()
    for _ in range(2):
        r.attempt(A)
    r.clock.advance(301)
    r.attempt(A)  # closes the old window (2 refusals, 1 reported) and opens a new one
    assert r.summaries == [
        summary(A, SummaryKind.FIRST, 1, 0, False),
        summary(A, SummaryKind.WINDOW, 2, 300, False),
        summary(A, SummaryKind.FIRST, 1, 0, False),
    ]


def test_the_number_of_tracked_sources_is_capped_least_recent_first() -> None:
    r = Recorded()
    for _ in range(5):  # reported: the first refusal and the limit; 2 more are not yet
        r.attempt(A)
    for n in range(POLICY.max_sources):
        r.attempt(f"10.0.{n // 256}.{n % 256}")
    assert r.limiter.tracked == POLICY.max_sources
    # A was forgotten (least recently refused), its unreported refusals audited on the way out.
    assert [s for s in r.summaries if s.source == A] == [
        summary(A, SummaryKind.FIRST, 1, 0, False),
        summary(A, SummaryKind.LIMITED, 3, 0, True),
        summary(A, SummaryKind.WINDOW, 5, 0, True),
    ]
    assert len(r.summaries) == 3 + POLICY.max_sources  # one first entry per other source
    assert r.limiter.admit(A) is None  # a forgotten source starts with a full bucket


def test_concurrent_refusals_are_all_counted() -> None:
    r = Recorded(RefusalPolicy(burst=10_000, per_minute=1, window_seconds=300))

    def refuse() -> None:
        for _ in range(500):
            r.limiter.refused(A)

    threads = [threading.Thread(target=refuse) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    r.clock.advance(300)
    r.limiter.admit(B)
    assert r.summaries == [
        summary(A, SummaryKind.FIRST, 1, 0, False),
        summary(A, SummaryKind.WINDOW, 4000, 300, False),
    ]


def test_a_failing_audit_does_not_undo_the_refusal() -> None:
    def broken(_: RefusalSummary) -> None:
        raise RuntimeError("database down")

    limiter = RefusalLimiter("t", broken, RefusalPolicy(burst=1), clock=FakeClock())
    limiter.refused(A)
    assert limiter.admit(A) is not None


@pytest.mark.parametrize(
    "options",
    [
        {"burst": 0},
        {"per_minute": 0},
        {"per_minute": float("inf")},
        {"window_seconds": 0},
        {"max_sources": 0},
    ],
)
def test_nonsense_policies_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        RefusalPolicy(**options)


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("[2001:db8:1:3::1]", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("testclient", "testclient"),
        ("x" * 100, "x" * 64),
        ("", "unknown"),
    ],
)
def test_sources_are_addresses_and_ipv6_slash_64s(host: str, source: str) -> None:
    assert source_key(host) == source


@pytest.mark.parametrize(
    ("peer", "source"),
    [
        ("ipv4:127.0.0.1:50412", "127.0.0.1"),
        ("ipv6:[::1]:50412", "::/64"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::/64"),
        ("ipv6:[::ffff:10.1.2.3]:443", "10.1.2.3"),
        ("unix:/run/hub.sock", "unix"),
    ],
)
def test_grpc_peers_map_to_sources(peer: str, source: str) -> None:
    assert peer_source(peer) == source


# ---------------------------------------------------------------------------------- end to end


def refused_entries(engine: Engine) -> list[AuditEntry]:
    with session_scope(engine) as session:
        return list(
            reversed(AuditRepository(session).search(action=refusals.AUDIT_ACTION, limit=1000))
        )


def counted_checks(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[str]:
    """Every credential ``module`` checks from now on (the real check still runs)."""
    checked: list[str] = []
    real = module.authenticate

    def counting(session: Any, bearer: str, now: datetime) -> Any:
        checked.append(bearer)
        return real(session, bearer, now)

    monkeypatch.setattr(module, "authenticate", counting)
    return checked


def test_grpc_refuses_a_limited_source_without_checking_its_credential(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = provision(engine)
    clock = FakeClock()
    checked = counted_checks(monkeypatch, rpc_app)
    with running_hub(engine, credentials, refusal_policy=POLICY, refusal_clock=clock) as hub:

        def status(credential: str) -> grpc.StatusCode:
            try:
                hub.member_stub.GetStatus(
                    pb.GetStatusRequest(),
                    metadata=(("authorization", f"Bearer {credential}"),),
                    timeout=10,
                )
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()
                return code
            return grpc.StatusCode.OK

        valid = credentials["m1"]
        assert status(valid) is grpc.StatusCode.OK
        codes = [status(f"guess-{n}") for n in range(1000)]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + (
            [grpc.StatusCode.RESOURCE_EXHAUSTED] * 997
        )
        assert status(valid) is grpc.StatusCode.RESOURCE_EXHAUSTED  # the trade-off
        assert checked == [valid, "guess-0", "guess-1", "guess-2"]
        clock.advance(REFILL)
        assert status(valid) is grpc.StatusCode.OK

    entries = refused_entries(engine)
    assert [(e.actor, e.target) for e in entries] == [("rpc", "source:127.0.0.1")] * 2
    assert [(e.details["kind"], e.details["refusals"], e.details["limited"]) for e in entries] == [
        ("first", 1, False),
        ("limited", 3, True),
    ]
    assert entries[1].details["summary"] == "3 refusals from 127.0.0.1 in the last 0 s, limited"
    assert all("guess" not in str(e.details) for e in entries)


class SignIn:
    def __init__(self, app: Any, host: str) -> None:
        self.client = TestClient(app, client=(host, 50000))
        self.client.get("/login")

    def post(self, credential: str) -> int:
        response = self.client.post(
            "/login",
            data={"credential": credential, "csrf": self.client.cookies["sigshare_login"]},
            follow_redirects=False,
        )
        if response.status_code == 429:
            assert response.headers["retry-after"] == "10"
            assert "too many refused sign-ins from your address" in response.text
        return response.status_code


def test_console_sign_in_is_limited_per_client_address(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = provision(sqlite_engine)
    clock = FakeClock()
    checked = counted_checks(monkeypatch, web_auth)
    app = create_app(
        sqlite_engine,
        secure_cookies=False,
        refusal_policy=POLICY,
        refusal_clock=clock,
    )
    attacker, colleague = SignIn(app, A), SignIn(app, B)
    valid = credentials[COORDINATOR]
    codes = [attacker.post(f"guess-{n}") for n in range(300)]
    assert codes == [401] * 3 + [429] * 297
    assert attacker.post(valid) == 429  # refused unchecked while limited: the trade-off
    assert checked == ["guess-0", "guess-1", "guess-2"]
    assert colleague.post(valid) == 303  # another address signs in as usual
    clock.advance(REFILL)
    assert attacker.post(valid) == 303

    entries = refused_entries(sqlite_engine)
    assert [(e.actor, e.target, e.details["kind"], e.details["refusals"]) for e in entries] == [
        ("web", f"source:{A}", "first", 1),
        ("web", f"source:{A}", "limited", 3),
    ]
    # The window's total is reported once the window closes.
    clock.advance(POLICY.window_seconds)
    assert SignIn(app, B).post("wrong") == 401
    with_total = refused_entries(sqlite_engine)[2:]
    assert [(e.target, e.details["kind"], e.details["refusals"]) for e in with_total] == [
        (f"source:{A}", "window", 301),
        (f"source:{B}", "first", 1),
    ]


def test_the_console_audit_clock_stamps_refusal_entries(sqlite_engine: Engine) -> None:
    provision(sqlite_engine)
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    app = create_app(sqlite_engine, secure_cookies=False, clock=lambda: moment)
    assert SignIn(app, A).post("wrong") == 401
    [entry] = refused_entries(sqlite_engine)
    assert entry.at == moment
