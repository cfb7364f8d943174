"""An e-mail forum for tests that run the hub as processes and members through the SDK or the
``sigshare`` script: the forum provisioned straight into the hub's database, members' indicator
files, and the check of what the hub stored.

:func:`check_hub` asserts zero lost or duplicated submissions (each member has exactly one active
submission, whose content digest is the SHA-256 of its latest sketch) and returns the active
filters decoded from their stored payloads; :meth:`Recomputed.answers` gives the exact answers
they imply, so that every ``Resolve`` can be compared with a clean recomputation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sigshare.client.hub_types import TokenStatus
from sigshare.hub.domain import Role, SubmissionStatus
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomFilter
from sigshare.sketch.codec import decode_bloom

KEY_ID = "k1"
KIND = "email"
FORUM_FPR = 1e-3
SETUP_ACTOR = "forum-setup"


def provision_members(url: str, names: list[str], capacity: int) -> dict[str, str]:
    """Migrate the database at ``url``, publish :data:`KIND` (quorum 2) for ``capacity`` items
    and register ``names`` as members; their credentials by name."""
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    credentials = {}
    try:
        with session_scope(engine) as session:
            parameters.set_kind_parameters(
                session,
                actor=SETUP_ACTOR,
                kind=KIND,
                key_id=KEY_ID,
                capacity=capacity,
                forum_fpr=FORUM_FPR,
                quorum=2,
                now=now,
            )
            for name in names:
                _, issued = principals.add_principal(
                    session, actor=SETUP_ACTOR, name=name, role=Role.MEMBER, now=now
                )
                credentials[name] = issued.token
    finally:
        engine.dispose()
    return credentials


def write_emails(path: Path, values: list[str]) -> Path:
    """An indicator CSV of e-mail ``values`` (category ``fraud``)."""
    path.write_text("kind,value,category\n" + "".join(f"email,{v},fraud\n" for v in values))
    return path


def token_array(tokens: bytes) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Concatenated 16-byte tokens as the (n, 2) little-endian words filters take."""
    return np.frombuffer(tokens, dtype="<u8").reshape(-1, 2)


@dataclass
class Recomputed:
    """The active filters decoded from their stored payloads, by member name."""

    filters: dict[str, BloomFilter]
    quorum: int

    def answers(self, name: str, tokens: bytes) -> tuple[list[int], list[int]]:
        """The exact answers to ``name`` for ``tokens`` within budget: status per token, and
        the number of other members whose own filter holds it (0 below quorum − 1)."""
        array = token_array(tokens)
        held = self.filters[name].contains_tokens(array)
        others = np.zeros(len(array), dtype=np.int64)
        for other, bloom in self.filters.items():
            if other != name:
                others += bloom.contains_tokens(array)
        shown = held & (others >= self.quorum - 1)
        status = np.where(held, TokenStatus.ANSWERED, TokenStatus.NOT_HELD)
        return status.tolist(), np.where(shown, others, 0).tolist()


def check_hub(url: str, expected: dict[str, bytes]) -> Recomputed:
    """Zero lost or duplicated submissions; the active filters, decoded from storage.

    ``expected``: member → the payload of its latest sketch.
    """
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            submissions = SubmissionRepository(session)
            for name, payload in expected.items():
                principal = PrincipalRepository(session).get_by_name(name)
                assert principal is not None
                rows = submissions.of_member(principal.id)
                keys = [(s.family_kind, s.content_sha256) for s in rows]
                assert len(keys) == len(set(keys)), f"{name}: a submission is duplicated"
                active = [s for s in rows if s.status is SubmissionStatus.ACTIVE]
                assert [(s.family_kind, s.content_sha256) for s in active] == [
                    (KIND, hashlib.sha256(payload).digest())
                ], f"{name}: not exactly one active {KIND} submission of its latest sketch"
            params = ParameterRepository(session).get_kind(KIND)
            assert params is not None
            names = {p.id: p.name for p in PrincipalRepository(session).list()}
            filters = {
                names[s.member_id]: decode_bloom(submissions.payload(s.id), params.bloom_params())
                for s in submissions.all_active(KIND)
            }
            assert set(expected) <= set(filters)
            return Recomputed(filters, params.quorum)
    finally:
        engine.dispose()
