"""Moving the forum to a new key epoch: every kind and every MinHash family at once.

A key epoch is the key id of the forum secret members sketch with. The custodian distributes a
new epoch's secret sealed to each member (:mod:`.keyring`); the operator then moves the
published parameters to it with one call here. Nothing else about a kind or family changes.
Members that fetched the new secret before the switch have sent their sketches under it ahead
(pending submissions, :mod:`.submissions`); the switch makes those active in its own
transaction and ends the old epoch's, so answers continue without a gap for every member that
did. The others resubmit in their next run, with the secret their job installs from its
envelope.

The switch is refused for a key id no sealed rotation distributed (members would have no
secret for it) unless the operator says the secret went out of band.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from sigshare.hub.domain import MINHASH_FAMILY_PREFIX, KindParameters, MinHashParameters
from sigshare.hub.errors import InvalidArgumentError, PreconditionError
from sigshare.hub.services import keyring
from sigshare.hub.services.families import prepare
from sigshare.hub.services.parameters import (
    list_parameters,
    set_kind_parameters,
    set_minhash_parameters,
)
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.ledgers import QueryLedgerRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id

_Parameters = TypeVar("_Parameters", bound=KindParameters | MinHashParameters)


def next_key_id(
    session: Session, published: Sequence[KindParameters | MinHashParameters] | None = None
) -> str | None:
    """The key epoch the forum is rotating to: the newest sealed rotation's key id while some
    published kind or family does not use it yet, else ``None``. ``published``: every kind's
    and family's parameters, when the caller has read them already.

    Members holding its secret may submit under it ahead of the switch (pending submissions).
    """
    latest = keyring.latest_rotation_key_id(session)
    if latest is None:
        return None
    if published is None:
        kinds, families = list_parameters(session)
        published = [*kinds, *families]
    key_ids = {p.key_id for p in published}
    return latest if key_ids and key_ids != {latest} else None


def sent_ahead(session: Session, *, key_id: str) -> dict[str, list[str]]:
    """Per member: the kinds and MinHash families it has sent ahead under ``key_id`` (its
    pending submissions), which the switch to ``key_id`` will make active."""
    names = {p.id: p.name for p in PrincipalRepository(session).list()}
    found: dict[str, list[str]] = {}
    for submission in SubmissionRepository(session).pending_under(key_id):
        found.setdefault(names[submission.member_id], []).append(
            submission.family_kind.removeprefix(MINHASH_FAMILY_PREFIX)
        )
    return found


def under_key_id(params: _Parameters, key_id: str) -> _Parameters:
    """``params`` as they will be published in key epoch ``key_id`` (nothing else changes)."""
    return dataclasses.replace(params, key_id=key_id)


@dataclass(frozen=True, slots=True)
class MovedParameters:
    """One kind or MinHash family and the key id it had before the switch."""

    subject: str
    """``kind`` or ``family``."""
    name: str
    previous_key_id: str
    senders: int = 0
    """Members with an active submission before the switch."""
    carried: int = 0
    """Members whose submission sent ahead under the new key epoch became active at the
    switch: they count in answers without a gap."""


@dataclass(frozen=True, slots=True)
class EpochSwitch:
    """What :func:`switch_epoch` changed."""

    key_id: str
    moved: list[MovedParameters]
    already: list[MovedParameters]
    """Kinds and families that were at ``key_id`` already (nothing changed for them)."""
    sealed: bool
    """Whether a sealed rotation distributed this key id (else it went out of band)."""
    not_fetched: list[str]
    """Recipients of that rotation that have not fetched their envelope yet: they count in no
    answer until their job fetches it and resubmits."""


def switch_epoch(
    session: Session, *, actor: str, key_id: str, out_of_band: bool = False, now: datetime
) -> EpochSwitch:
    """Publish every kind and MinHash family under ``key_id``, keeping all else.

    :class:`PreconditionError` when nothing is published yet, or when no sealed rotation
    distributed ``key_id`` and ``out_of_band`` is not set; :class:`InvalidArgumentError` for a
    malformed key id. Either changes nothing.
    """
    if not is_valid_key_id(key_id):
        raise InvalidArgumentError(KEY_ID_RULE)
    kinds, families = list_parameters(session)
    if not kinds and not families:
        raise PreconditionError(
            "no kind or MinHash family is published yet: publish them with `params set` and "
            "`params set-minhash`"
        )
    pickups = keyring.rotation_pickups(session, key_id=key_id)
    if pickups is None and not out_of_band:
        raise PreconditionError(
            f"no sealed rotation distributed key id {key_id!r}, so members have no secret for "
            f"it: the custodian runs `sigshare keys rotate --key-id {key_id}` first (or, if the "
            "secret went to every member out of band, pass --out-of-band)"
        )
    moved: list[MovedParameters] = []
    already: list[MovedParameters] = []
    submissions = SubmissionRepository(session)
    # Every lock first, in name order: the order revocation and uploads take them in.
    moving = [k.kind for k in kinds if k.key_id != key_id]
    moving += [f.family_kind for f in families if f.key_id != key_id]
    for family_kind in sorted(moving):
        submissions.lock_family(family_kind)
    everything: list[KindParameters | MinHashParameters] = [*kinds, *families]
    for params in everything:
        name = params.kind if isinstance(params, KindParameters) else params.family
        subject = "kind" if isinstance(params, KindParameters) else "family"
        if params.key_id == key_id:
            already.append(MovedParameters(subject, name, params.key_id))
            continue
        family_kind = params.kind if isinstance(params, KindParameters) else params.family_kind
        senders = len(submissions.all_active(family_kind))
        if isinstance(params, KindParameters):
            published: KindParameters | MinHashParameters = set_kind_parameters(
                session,
                actor=actor,
                kind=params.kind,
                key_id=key_id,
                capacity=params.capacity,
                forum_fpr=params.forum_fpr,
                now=now,
            )
        else:
            published = set_minhash_parameters(
                session, actor=actor, family=params.family, key_id=key_id, now=now
            )
        # At once rather than at the family's next use: the members' pending submissions of
        # the new epoch become active in this transaction, so no answer runs without them.
        prepare(session, published, now)
        if isinstance(params, KindParameters):
            # The old epoch's tokens say nothing about the new one's: each member asks its
            # values again under the new key, and that must not find its budgets spent.
            QueryLedgerRepository(session).clear_kind(params.kind)
        carried = len(submissions.all_active(family_kind))
        moved.append(MovedParameters(subject, name, params.key_id, senders, carried))
    not_fetched = [] if pickups is None else sorted(pickups.not_fetched)
    AuditRepository(session).append(
        actor,
        "params.epoch",
        key_id,
        {
            "moved": [
                {m.subject: m.name, "from": m.previous_key_id, "carried": m.carried} for m in moved
            ],
            "sealed": pickups is not None,
            "not_fetched": not_fetched,
        },
        at=now,
    )
    return EpochSwitch(
        key_id=key_id,
        moved=moved,
        already=already,
        sealed=pickups is not None,
        not_fetched=not_fetched,
    )
