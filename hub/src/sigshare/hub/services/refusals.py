"""Refused credentials: a token bucket per source address, and audit entries in aggregate.

Every refused credential (gRPC bearer or console sign-in) takes a token from its source's
bucket; a source whose bucket is empty is refused at once, *without* its credential being
checked, until the bucket refills. Guessing is then no faster than the refill rate, whatever
the attacker sends. The price: while a source is limited, a valid credential from it is
refused too — so clients sharing one address (behind NAT, or a proxy that hides the client's
address) share one bucket. Sources that present valid credentials take no tokens and are not
tracked at all.

The audit log gets at most three ``auth.refused`` entries per source per window, however many
refusals it sends: the first refusal, a summary when the source becomes limited, and a summary
of the window's count when the window closes (written at the next refusal or sweep after it).
Only the number of sources the limiter tracks is bounded (least recently refused sources are
forgotten first, their unreported count audited), so memory stays bounded too.

IPv6 sources are grouped by their /64 network: one host usually holds a whole /64 and could
otherwise start a fresh bucket per address.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage.audit import AuditRepository

log = logging.getLogger("sigshare.hub.access")

AUDIT_ACTION = "auth.refused"
MAX_SOURCE_LENGTH = 64
SWEEP_SECONDS = 10.0
"""How often (at most) expired windows of other sources are closed and idle sources dropped."""


@dataclass(frozen=True)
class RefusalPolicy:
    """``burst`` refused credentials per source at once, refilled at ``per_minute``; audit
    summaries per ``window_seconds``; at most ``max_sources`` sources tracked."""

    burst: int = 10
    per_minute: float = 10.0
    window_seconds: float = 300.0
    max_sources: int = 10_000

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise InvalidArgumentError("the refusal burst must be at least 1")
        if not (self.per_minute > 0 and math.isfinite(self.per_minute)):
            raise InvalidArgumentError("refusals per minute must be a positive number")
        if not self.window_seconds > 0 or self.max_sources < 1:
            raise InvalidArgumentError("the refusal window and source limit must be positive")


class SummaryKind(StrEnum):
    FIRST = "first"
    """The first refusal of a window."""
    LIMITED = "limited"
    """The source's bucket ran empty: further attempts are refused unchecked."""
    WINDOW = "window"
    """The window closed (or the source was forgotten) with refusals not yet reported."""


@dataclass(frozen=True)
class RefusalSummary:
    """What one audit entry says: ``refusals`` from ``source`` over ``seconds`` of its window."""

    channel: str
    source: str
    kind: SummaryKind
    refusals: int
    seconds: float
    limited: bool

    def describe(self) -> str:
        limited = ", limited" if self.limited else ""
        return (
            f"{self.refusals} refusals from {self.source} in the last "
            f"{round(self.seconds)} s{limited}"
        )


def audit_refusal(session: Session, summary: RefusalSummary, now: datetime) -> None:
    """Append ``summary`` to the audit log (no credential material is ever part of it)."""
    AuditRepository(session).append(
        summary.channel,
        AUDIT_ACTION,
        f"source:{summary.source}",
        {
            "channel": summary.channel,
            "source": summary.source,
            "kind": summary.kind.value,
            "refusals": summary.refusals,
            "seconds": round(summary.seconds, 3),
            "limited": summary.limited,
            "summary": summary.describe(),
        },
        at=now,
    )


def source_key(host: str) -> str:
    """The bucket a client host belongs to: an IPv4 address as is, an IPv6 address's /64
    (an IPv4-mapped one as its IPv4 address), anything else (a name) truncated."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host[:MAX_SOURCE_LENGTH] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Source:
    tokens: float
    refilled: float
    window_start: float
    refusals: int = 0
    reported: int = 0
    limited_reported: bool = False


Recorder = Callable[[RefusalSummary], None]


class RefusalLimiter:
    """Thread-safe: the token buckets and audit windows of one server's refusing sources.

    ``record`` writes a summary to the audit log; it is called outside the limiter's lock.
    ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(
        self,
        channel: str,
        record: Recorder,
        policy: RefusalPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.policy = policy or RefusalPolicy()
        self._record = record
        self._clock = clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()
        self._swept = clock()

    @property
    def tracked(self) -> int:
        """How many sources the limiter holds state for."""
        with self._lock:
            return len(self._sources)

    def admit(self, source: str) -> float | None:
        """``None`` if ``source`` may have its credential checked; else the seconds until it
        may again — the attempt is then a refusal itself (counted and audited in aggregate)."""
        summaries: list[RefusalSummary] = []
        with self._lock:
            now = self._clock()
            state = self._sources.get(source)
            wait = None
            if state is not None:
                self._refill(state, now)
                if state.tokens < 1:
                    wait = (1 - state.tokens) * 60 / self.policy.per_minute
                    summaries += self._count(source, state, now)
            summaries += self._sweep(now)
        self._emit(summaries)
        return wait

    def refused(self, source: str) -> None:
        """``source``'s credential was checked and refused: take a token from its bucket."""
        summaries: list[RefusalSummary] = []
        with self._lock:
            now = self._clock()
            state = self._sources.get(source)
            if state is None:
                state = _Source(tokens=self.policy.burst, refilled=now, window_start=now)
                self._sources[source] = state
                while len(self._sources) > self.policy.max_sources:
                    forgotten, old = self._sources.popitem(last=False)
                    summaries += self._close(forgotten, old, now)
            else:
                self._sources.move_to_end(source)
                self._refill(state, now)
            state.tokens = max(state.tokens - 1, 0.0)
            summaries += self._count(source, state, now)
            summaries += self._sweep(now)
        self._emit(summaries)

    def _refill(self, state: _Source, now: float) -> None:
        gained = (now - state.refilled) * self.policy.per_minute / 60
        state.tokens = min(float(self.policy.burst), state.tokens + gained)
        state.refilled = now

    def _count(self, source: str, state: _Source, now: float) -> list[RefusalSummary]:
        summaries: list[RefusalSummary] = []
        if now - state.window_start >= self.policy.window_seconds:
            summaries += self._close(source, state, now)
            state.window_start, state.refusals, state.reported = now, 0, 0
            state.limited_reported = False
        state.refusals += 1
        limited = state.tokens < 1
        if state.refusals == 1 or (limited and not state.limited_reported):
            kind = SummaryKind.FIRST if state.refusals == 1 else SummaryKind.LIMITED
            summaries.append(self._summary(source, state, kind, now, limited))
            state.reported = state.refusals
            state.limited_reported = limited
        return summaries

    def _close(self, source: str, state: _Source, now: float) -> list[RefusalSummary]:
        if state.refusals <= state.reported:
            return []
        end = min(now, state.window_start + self.policy.window_seconds)
        summary = self._summary(source, state, SummaryKind.WINDOW, end, state.limited_reported)
        state.reported = state.refusals
        return [summary]

    def _summary(
        self, source: str, state: _Source, kind: SummaryKind, end: float, limited: bool
    ) -> RefusalSummary:
        return RefusalSummary(
            channel=self.channel,
            source=source,
            kind=kind,
            refusals=state.refusals,
            seconds=end - state.window_start,
            limited=limited,
        )

    def _sweep(self, now: float) -> list[RefusalSummary]:
        """Close expired windows; forget sources with a full bucket and nothing to report."""
        if now - self._swept < SWEEP_SECONDS:
            return []
        self._swept = now
        summaries: list[RefusalSummary] = []
        for source in list(self._sources):
            state = self._sources[source]
            if now - state.window_start < self.policy.window_seconds:
                continue
            summaries += self._close(source, state, now)
            self._refill(state, now)
            if state.tokens >= self.policy.burst:
                del self._sources[source]
        return summaries

    def _emit(self, summaries: list[RefusalSummary]) -> None:
        for summary in summaries:
            try:
                self._record(summary)
            except Exception:  # the refusal itself still stands; the database may be down
                log.exception("could not audit refusals: %s", summary.describe())
