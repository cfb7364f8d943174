"""Sealed distribution of the forum secret: key registrations, their approval, rotations and
the envelopes the hub relays without being able to open them.

Members and custodians register public keys with a proof that they hold the signing key; an
admin approves a registration by the fingerprint the principal read out to them. A custodian
lists the recipients (active members with approved keys), seals a new secret to each and
uploads every envelope at once: the upload is refused whole unless it covers exactly the
current recipients at their approved keys, so a rotation never leaves a member out by accident
and never reaches a revoked one. Members fetch their own envelopes; the first fetch of each is
recorded and audited.

The hub checks each uploaded envelope's signature against the custodian's approved signing key
and that its header agrees with what the upload says it is
(:func:`sigshare.keyring.verify_envelope`); it never opens one (it cannot), and never logs or
audits envelope bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    EnvelopePickup,
    KeyRegistration,
    KeyState,
    Principal,
    Role,
    Rotation,
    RotationRequest,
    StoredEnvelope,
    utc,
)
from sigshare.hub.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    RegistrationNotFoundError,
)
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.keyring import KeyringRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.keyring import (
    MAX_ENVELOPE_BYTES,
    EnvelopeFormatError,
    EnvelopeHeader,
    EnvelopeSignatureError,
    KeyringError,
    registration_fingerprint,
    signing_fingerprint,
    verify_envelope,
    verify_registration_proof,
)
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id

KEY_HOLDERS = frozenset({Role.MEMBER, Role.CUSTODIAN})
"""Roles that register keys: members receive envelopes, custodians sign them."""
FINGERPRINT_PATTERN = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
MAX_REASON_LENGTH = 200
_SHOWN = 64
"""Longest part of a caller's value quoted back in an error message."""


@dataclass(frozen=True, slots=True)
class RegistrationOutcome:
    registration: KeyRegistration
    unchanged: bool
    """The same keys were registered already (in use or awaiting approval): nothing changed."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """A principal's own view of its keys and the envelopes waiting for it."""

    name: str
    approved: KeyRegistration | None
    pending: KeyRegistration | None
    envelopes_waiting: int


@dataclass(frozen=True, slots=True)
class CustodianKey:
    """A custodian's approved signing key, which members pin by its fingerprint."""

    name: str
    signing_public: bytes = field(repr=False)
    signing_fingerprint: str


@dataclass(frozen=True, slots=True)
class RecipientList:
    """Who a rotation must be sealed to, who would receive nothing, and why one is due."""

    recipients: list[KeyRegistration]
    """Every active member's approved registration, by name."""
    unregistered: list[str]
    """Active members without approved keys."""
    rotation_due: list[str]
    """Reasons of the open rotation requests, oldest first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeUpload:
    """One envelope of an upload and what the custodian says it is."""

    key_id: str
    recipient: str
    custodian: str
    recipient_fingerprint: str
    envelope: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MemberKeysView:
    """An admin's view of one principal's registrations and, for a member, whether it
    fetched its envelope of the latest rotation."""

    principal: Principal
    registrations: list[KeyRegistration]
    """Oldest first, retired ones included."""
    latest_rotation: Rotation | None
    latest_pickup: EnvelopePickup | None
    """The member's envelope of :attr:`latest_rotation` (``None``: it was not a recipient)."""


@dataclass(frozen=True, slots=True)
class KeyApproval:
    principal: Principal
    registration: KeyRegistration
    retired: KeyRegistration | None
    """The registration this approval replaced, if the principal had one in use."""
    changed: bool
    """False when the registration was approved already."""
    latest_rotation: Rotation | None
    in_latest_rotation: bool
    """Whether the latest rotation sealed the forum secret to this principal."""


@dataclass(frozen=True, slots=True)
class RotationPickups:
    """One rotation and, per recipient, whether and when it fetched its envelope."""

    rotation: Rotation
    pickups: list[EnvelopePickup]

    @property
    def fetched(self) -> int:
        return sum(pickup.first_fetched_at is not None for pickup in self.pickups)

    @property
    def not_fetched(self) -> list[str]:
        """Recipients that never fetched their envelope, by name."""
        return [p.recipient for p in self.pickups if p.first_fetched_at is None]


@dataclass(frozen=True, slots=True)
class RotationProgress:
    rotation: Rotation
    fetched: int
    """Recipients that fetched their envelope at least once."""


@dataclass(frozen=True, slots=True)
class RotationStatus:
    due: list[RotationRequest]
    """Open rotation requests, oldest first: a rotation is due when there is any."""
    rotations: list[RotationProgress]
    """Newest first."""
    uncovered: list[str]
    """Current recipients the latest rotation sealed nothing to (e.g. members approved since):
    they hold no secret of it until the next rotation."""


# ---------------------------------------------------------------------------------- keys


def register_keys(
    session: Session,
    *,
    principal: Principal,
    sealing_public: bytes,
    signing_public: bytes,
    proof: bytes,
    now: datetime,
) -> RegistrationOutcome:
    """Register ``principal``'s public keys, awaiting an admin's approval.

    The proof must be the signing key's signature of
    ``registration_message(principal.name, sealing_public, signing_public)``. The same keys
    again change nothing (``unchanged``); new keys replace a registration still awaiting
    approval, while an approved one stays in use until the new keys are approved. Keys that
    were retired are refused: a principal moves on to new keys, never back.
    """
    _require_key_holder(principal, now)
    try:
        fingerprint = registration_fingerprint(sealing_public, signing_public)
        proven = verify_registration_proof(principal.name, sealing_public, signing_public, proof)
    except KeyringError as error:
        raise InvalidArgumentError(str(error)) from None
    if not proven:
        raise InvalidArgumentError(
            f"the registration proof does not verify for {principal.name!r} and these keys: "
            "it must be the signing key's signature of the registration message for this "
            "principal's name (`sigshare keys register` makes it)"
        )
    keyring = KeyringRepository(session)
    keyring.lock()
    existing = keyring.registration(principal.id, fingerprint)
    if existing is not None:
        if existing.state is KeyState.RETIRED:
            raise PreconditionError(
                f"keys {fingerprint} of {principal.name} were retired at "
                f"{_when(existing.retired_at)}: a retired registration cannot come back; "
                "create new keys and register those"
            )
        return RegistrationOutcome(existing, unchanged=True)
    replaced = keyring.pending(principal.id)
    if replaced is not None:
        keyring.retire(replaced.id, now)
    registration = keyring.add_registration(
        principal.id,
        sealing_public=sealing_public,
        signing_public=signing_public,
        fingerprint=fingerprint,
        at=now,
    )
    in_use = keyring.approved(principal.id)
    AuditRepository(session).append(
        principal.name,
        "keys.register",
        principal.name,
        {
            "fingerprint": fingerprint,
            "replaced_pending": None if replaced is None else replaced.fingerprint,
            "in_use": None if in_use is None else in_use.fingerprint,
        },
        at=now,
    )
    return RegistrationOutcome(registration, unchanged=False)


def key_status(session: Session, *, principal: Principal, now: datetime) -> KeyStatus:
    """The caller's approved and pending registrations and how many envelopes await it."""
    _require_key_holder(principal, now)
    keyring = KeyringRepository(session)
    return KeyStatus(
        name=principal.name,
        approved=keyring.approved(principal.id),
        pending=keyring.pending(principal.id),
        envelopes_waiting=keyring.waiting(principal.id),
    )


def fetch_envelopes(
    session: Session, *, principal: Principal, now: datetime
) -> list[StoredEnvelope]:
    """Every envelope addressed to ``principal``, oldest first; each fetch is recorded, and
    the first fetch of an envelope is audited (``keys.fetch``, with its key id)."""
    _require_key_holder(principal, now)
    keyring = KeyringRepository(session)
    envelopes = keyring.envelopes_for(principal.id)
    if envelopes:
        first = keyring.mark_fetched([envelope.id for envelope in envelopes], now)
        if first:
            AuditRepository(session).append(
                principal.name, "keys.fetch", principal.name, {"key_ids": first}, at=now
            )
    return envelopes


def list_custodians(session: Session, *, now: datetime) -> list[CustodianKey]:
    """Active custodians with approved keys, by name, with their signing keys."""
    return [
        CustodianKey(
            name=registration.principal,
            signing_public=registration.signing_public,
            signing_fingerprint=signing_fingerprint(registration.signing_public),
        )
        for registration in KeyringRepository(session).in_use(Role.CUSTODIAN, now)
    ]


def list_recipients(session: Session, *, now: datetime) -> RecipientList:
    """What a custodian seals a rotation to: every active member's approved keys."""
    keyring = KeyringRepository(session)
    return RecipientList(
        recipients=keyring.in_use(Role.MEMBER, now),
        unregistered=keyring.without_keys(Role.MEMBER, now),
        rotation_due=[request.reason for request in keyring.open_requests()],
    )


# ---------------------------------------------------------------------------------- rotations


def upload_envelopes(
    session: Session,
    *,
    custodian: Principal,
    key_id: str,
    activate_at: datetime | None,
    envelopes: Sequence[EnvelopeUpload],
    now: datetime,
) -> Rotation:
    """Store a rotation to ``key_id``: one envelope per current recipient, all or nothing.

    Refused, storing nothing, unless the custodian's own keys are approved and signed every
    envelope; ``key_id`` is new (never rotated to, not the one published now); every envelope
    is at most :data:`MAX_ENVELOPE_BYTES` and its header agrees with its upload metadata and
    ``activate_at`` (to the second: envelopes carry whole seconds); and the envelopes cover
    exactly the active members with approved keys, each sealed to its approved registration.
    The rotation satisfies every open rotation request.
    """
    if custodian.role is not Role.CUSTODIAN:
        raise PermissionDeniedError(
            f"only a custodian uploads envelopes, not a {custodian.role.value}"
        )
    if not is_valid_key_id(key_id):
        raise InvalidArgumentError(f"key id {key_id[:_SHOWN]!r} is invalid: {KEY_ID_RULE}")
    activation = None if activate_at is None else utc(activate_at).replace(microsecond=0)
    keyring = KeyringRepository(session)
    keyring.lock()
    own = keyring.approved(custodian.id)
    if own is None:
        raise PreconditionError(
            f"custodian {custodian.name} has no approved keys: register them with `sigshare "
            f"keys register` and ask an admin to run `sigshare-hub member approve-keys "
            f"{custodian.name} FINGERPRINT`"
        )
    _require_new_key_id(session, keyring, key_id)
    uploaded = _checked_envelopes(
        envelopes,
        key_id=key_id,
        custodian=custodian.name,
        signing_public=own.signing_public,
        activate_at=activation,
    )
    recipients = keyring.in_use(Role.MEMBER, now)
    if not recipients:
        raise PreconditionError(
            "no active member has approved keys, so there is nobody to seal the secret to: "
            "members run `sigshare keys register` and an admin approves them with "
            "`sigshare-hub member approve-keys NAME FINGERPRINT`"
        )
    _require_exact_recipients(recipients, uploaded)
    rotation = keyring.add_rotation(
        key_id=key_id,
        custodian_id=custodian.id,
        activate_at=activation,
        envelopes=[(r, uploaded[r.principal].envelope) for r in recipients],
        at=now,
    )
    satisfied = keyring.satisfy_requests(key_id)
    AuditRepository(session).append(
        custodian.name,
        "keys.rotate",
        key_id,
        {
            "recipients": [registration.principal for registration in recipients],
            "total_bytes": rotation.total_bytes,
            "activate_at": None if activation is None else activation.isoformat(),
            "satisfied": [request.reason for request in satisfied],
        },
        at=now,
    )
    return rotation


def _require_new_key_id(session: Session, keyring: KeyringRepository, key_id: str) -> None:
    """Each key id names one secret: a second rotation to it, or a rotation to the key id the
    forum publishes now, would give members two different secrets under one name."""
    previous = keyring.rotation(key_id)
    if previous is not None:
        raise AlreadyExistsError(
            f"key id {key_id!r} was rotated to at {_when(previous.created_at)} by "
            f"{previous.custodian}: a key id is distributed once; choose a new key id"
        )
    parameters = ParameterRepository(session)
    published = [p.kind for p in parameters.list_kinds() if p.key_id == key_id]
    published += [p.family for p in parameters.list_minhash_families() if p.key_id == key_id]
    if published:
        raise PreconditionError(
            f"key id {key_id!r} is the one the forum publishes now (for {', '.join(published)}): "
            "a rotation needs a new key id"
        )


def _checked_envelopes(
    envelopes: Sequence[EnvelopeUpload],
    *,
    key_id: str,
    custodian: str,
    signing_public: bytes,
    activate_at: datetime | None,
) -> dict[str, EnvelopeUpload]:
    """The upload's envelopes by recipient, each checked against its metadata and header."""
    checked: dict[str, EnvelopeUpload] = {}
    for upload in envelopes:
        recipient = f"{upload.recipient[:_SHOWN]!r}"
        if len(upload.envelope) > MAX_ENVELOPE_BYTES:
            raise InvalidArgumentError(
                f"the envelope for {recipient} is {len(upload.envelope)} bytes; an envelope is "
                f"at most {MAX_ENVELOPE_BYTES} bytes"
            )
        if upload.recipient in checked:
            raise InvalidArgumentError(f"the upload holds two envelopes for {recipient}")
        try:
            header = verify_envelope(upload.envelope, custodian_signing_public=signing_public)
        except EnvelopeFormatError as error:
            raise InvalidArgumentError(
                f"the envelope for {recipient} is not a valid envelope: {error}"
            ) from None
        except EnvelopeSignatureError as error:
            # The custodian's approved key did not sign it: whoever uploads with the
            # custodian's credential alone cannot start an epoch members would only refuse.
            if error.signed_with != error.trusted:
                raise PreconditionError(
                    f"the envelope for {recipient} was signed with key "
                    f"{error.signed_with[:_SHOWN]}, but {custodian}'s approved signing key is "
                    f"{error.trusted}: seal with the keys the hub approved, or have the new keys "
                    "approved first"
                ) from None
            raise InvalidArgumentError(
                f"the envelope for {recipient} names {custodian}'s approved signing key "
                f"{error.trusted} but its signature does not verify: it was altered after "
                "signing; seal it again"
            ) from None
        claimed = {
            "key_id": (upload.key_id, key_id),
            "custodian": (upload.custodian, custodian),
        }
        for what, (said, expected) in claimed.items():
            if said != expected:
                raise InvalidArgumentError(
                    f"the envelope for {recipient} is labelled {what} {said[:_SHOWN]!r}, but "
                    f"this upload is {custodian}'s rotation to {key_id!r}"
                )
        _require_header_agrees(header, upload, recipient)
        if header.activate_at != activate_at:
            raise InvalidArgumentError(
                f"the envelope for {recipient} activates at {_when(header.activate_at)}, but "
                f"the upload says {_when(activate_at)}: seal every envelope with the upload's "
                "activation time"
            )
        checked[upload.recipient] = upload
    return checked


def _require_header_agrees(header: EnvelopeHeader, upload: EnvelopeUpload, shown: str) -> None:
    pairs = {
        "key id": (header.key_id, upload.key_id),
        "recipient": (header.recipient, upload.recipient),
        "custodian": (header.custodian, upload.custodian),
        "recipient fingerprint": (header.recipient_fingerprint, upload.recipient_fingerprint),
    }
    for what, (in_header, said) in pairs.items():
        if in_header != said:
            raise InvalidArgumentError(
                f"the envelope for {shown} disagrees with its upload: its header names "
                f"{what} {in_header[:_SHOWN]!r} where the upload says {said[:_SHOWN]!r}; "
                "seal it again"
            )


def _require_exact_recipients(
    recipients: Sequence[KeyRegistration], uploaded: dict[str, EnvelopeUpload]
) -> None:
    current = {registration.principal: registration for registration in recipients}
    missing = sorted(set(current) - set(uploaded))
    extra = sorted(set(uploaded) - set(current))
    stale = sorted(
        name
        for name, upload in uploaded.items()
        if name in current and upload.recipient_fingerprint != current[name].fingerprint
    )
    problems = []
    if missing:
        problems.append(f"no envelope for {', '.join(missing)}")
    if extra:
        shown = ", ".join(repr(name[:_SHOWN]) for name in extra)
        problems.append(f"{shown} not a recipient (revoked, or keys not approved)")
    if stale:
        problems.append(f"keys changed for {', '.join(stale)}")
    if problems:
        raise PreconditionError(
            f"the forum's recipients changed since you listed them: {'; '.join(problems)}; "
            "run the rotation again"
        )


def rotation_pickups(session: Session, *, key_id: str) -> RotationPickups | None:
    """The rotation to ``key_id`` and each recipient's pickup (``None``: never rotated to)."""
    keyring = KeyringRepository(session)
    rotation = keyring.rotation(key_id)
    if rotation is None:
        return None
    return RotationPickups(rotation, keyring.pickups(key_id))


def latest_rotation_key_id(session: Session) -> str | None:
    """The key id of the newest rotation (``None``: nothing was ever rotated to)."""
    latest = KeyringRepository(session).latest_rotation()
    return None if latest is None else latest.key_id


def request_rotation(
    session: Session, *, actor: str, reason: str, now: datetime
) -> RotationRequest:
    """Record that a rotation is due because of ``reason`` (audited ``keys.rotation_due``);
    the next rotation satisfies it. An identical reason still open is returned as it is."""
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise InvalidArgumentError(
            f"a rotation reason is 1-{MAX_REASON_LENGTH} characters, got {len(reason)}"
        )
    keyring = KeyringRepository(session)
    for request in keyring.open_requests():
        if request.reason == reason:
            return request
    request = keyring.add_request(reason=reason, requested_by=actor, at=now)
    AuditRepository(session).append(
        actor, "keys.rotation_due", reason, {"request_id": request.id}, at=now
    )
    return request


def rotation_status(session: Session, *, now: datetime) -> RotationStatus:
    """Whether a rotation is due, every rotation with how many recipients fetched it, and the
    current recipients the latest one did not reach."""
    keyring = KeyringRepository(session)
    rotations = keyring.rotations()
    fetched = keyring.fetched_counts()
    uncovered: list[str] = []
    if rotations:
        reached = {pickup.recipient for pickup in keyring.pickups(rotations[0].key_id)}
        uncovered = [
            registration.principal
            for registration in keyring.in_use(Role.MEMBER, now)
            if registration.principal not in reached
        ]
    return RotationStatus(
        due=keyring.open_requests(),
        rotations=[RotationProgress(r, fetched.get(r.key_id, 0)) for r in rotations],
        uncovered=uncovered,
    )


# ---------------------------------------------------------------------------------- admin


def member_keys(session: Session, *, name: str) -> MemberKeysView:
    """``name``'s registrations and, for a member, its envelope of the latest rotation;
    :class:`NotFoundError` for an unknown name."""
    principal = _principal(session, name)
    keyring = KeyringRepository(session)
    latest = keyring.latest_rotation()
    pickup = None if latest is None else keyring.pickup(latest.key_id, principal.id)
    return MemberKeysView(principal, keyring.registrations(principal.id), latest, pickup)


def approve_keys(
    session: Session, *, actor: str, name: str, fingerprint: str, now: datetime
) -> KeyApproval:
    """Approve exactly ``name``'s registration with ``fingerprint`` (checked with its holder
    out of band); the registration it replaces, if any, is retired. Approving an approved
    registration again changes nothing. Refused for a revoked principal and a retired
    registration; :class:`NotFoundError` when ``name`` has no registration with that
    fingerprint."""
    if not isinstance(fingerprint, str) or not FINGERPRINT_PATTERN.fullmatch(fingerprint):
        raise InvalidArgumentError(
            f"fingerprint {fingerprint[:_SHOWN]!r} is malformed: it is SHA256: followed by 43 "
            f"base64 characters, as `sigshare-hub member keys {name[:_SHOWN]}` shows it"
        )
    principal = _principal(session, name)
    if not principal.is_active(now):
        raise PreconditionError(
            f"{principal.role} {principal.name} is revoked: its keys cannot be approved"
        )
    keyring = KeyringRepository(session)
    keyring.lock()
    registration = keyring.registration(principal.id, fingerprint)
    if registration is None:
        raise RegistrationNotFoundError(principal.name, fingerprint)
    if registration.state is KeyState.RETIRED:
        raise PreconditionError(
            f"keys {fingerprint} of {principal.name} were retired at "
            f"{_when(registration.retired_at)} (newer keys replaced them): approve its current "
            f"registration instead (`sigshare-hub member keys {principal.name}`)"
        )
    retired = None
    changed = registration.state is KeyState.PENDING
    if changed:
        retired = keyring.approved(principal.id)
        if retired is not None:
            keyring.retire(retired.id, now)
        keyring.approve(registration.id, actor=actor, at=now)
        AuditRepository(session).append(
            actor,
            "keys.approve",
            principal.name,
            {
                "role": principal.role.value,
                "fingerprint": fingerprint,
                "retired": None if retired is None else retired.fingerprint,
            },
            at=now,
        )
    approved = keyring.registration(principal.id, fingerprint)
    assert approved is not None  # read back the row approved above
    latest = keyring.latest_rotation()
    reached = latest is not None and keyring.pickup(latest.key_id, principal.id) is not None
    return KeyApproval(principal, approved, retired, changed, latest, reached)


def _principal(session: Session, name: str) -> Principal:
    principal = PrincipalRepository(session).get_by_name(name)
    if principal is None:
        raise NotFoundError("principal", name)
    return principal


def _require_key_holder(principal: Principal, now: datetime) -> None:
    if principal.role not in KEY_HOLDERS:
        raise PermissionDeniedError(
            f"only members and custodians hold keys, not a {principal.role.value}"
        )
    if not principal.is_active(now):
        raise PermissionDeniedError(f"{principal.name} is revoked")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat()
