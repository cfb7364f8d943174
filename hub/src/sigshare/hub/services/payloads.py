"""The blob store of submission payloads: its census and its sweep (see
:mod:`sigshare.hub.storage.blobs`)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from sigshare.hub.storage import blobs
from sigshare.hub.storage.blobs import DEFAULT_GRACE_SECONDS, BlobCensus, SweepResult
from sigshare.hub.storage.database import session_scope
from sigshare.hub.storage.submissions import SubmissionRepository

SWEEP_INTERVAL_SECONDS = 600.0

log = logging.getLogger("sigshare.hub.payloads")


def _referenced(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return SubmissionRepository(session).blob_names()


def location(engine: Engine) -> str:
    """Where the hub's payloads live: the blob directory, or ``database``."""
    store = blobs.store_for(engine)
    return "database" if store is None else str(store.root)


def census(engine: Engine) -> BlobCensus | None:
    """What the hub's blob store holds against what the database references (``None``: the
    hub keeps payloads in the database)."""
    store = blobs.store_for(engine)
    if store is None:
        return None
    return store.census(_referenced(engine))


def sweep(engine: Engine, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> SweepResult | None:
    """Delete blobs no submission references (ended submissions, uploads that never
    committed) once untouched for ``grace_seconds``."""
    store = blobs.store_for(engine)
    if store is None:
        return None
    # Read before listing files: a blob published after this read is young, so kept.
    return store.sweep(_referenced(engine), grace_seconds=grace_seconds)


def start_sweeper(
    engine: Engine,
    stop: threading.Event,
    *,
    interval_seconds: float = SWEEP_INTERVAL_SECONDS,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> threading.Thread | None:
    """Sweep the blob store now and every ``interval_seconds`` until ``stop`` is set, in a
    daemon thread (``None`` when payloads live in the database). Replicas sharing a store
    may all sweep: removing a file twice is harmless."""
    if blobs.store_for(engine) is None:
        return None

    def run() -> None:
        while True:
            try:
                result = sweep(engine, grace_seconds)
            except Exception:  # a sweep that fails is retried at the next interval
                log.exception("blob sweep failed")
            else:
                if result is not None and result.removed:
                    log.info(
                        "blob sweep removed=%d bytes=%d kept_young=%d",
                        result.removed,
                        result.removed_bytes,
                        result.kept_young,
                    )
            if stop.wait(interval_seconds):
                return

    thread = threading.Thread(target=run, name="blob-sweeper", daemon=True)
    thread.start()
    return thread
