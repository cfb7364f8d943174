"""The member's side of sealed forum-secret distribution: its keys, the custodian it trusts,
the envelopes it picks up, and — for a custodian — the rotation that seals a new secret to all.

A member registers its public keys with the hub once (:func:`register_member_keys`; an admin
approves them after checking the fingerprint out of band) and pins the custodian whose signing
key it accepts (:func:`pin_custodian`, by a fingerprint learnt out of band). Its nightly job then
fetches the envelopes addressed to it and installs every new forum secret next to the configured
one (:func:`pick_up_envelopes`). The hub relays envelopes it cannot open, and is not trusted with
them: an envelope is installed only if the pinned key signed it, it is addressed to this member's
name and current keys, and it opens; and only if it is news — a second, different secret for an
epoch already installed, or an envelope older than the newest one installed (a replayed or
superseded rotation), is refused. Refusals are recorded, reported once and change nothing else.

Both key files live in ``<state_dir>/keys/`` (mode 0700): ``member.keys`` (the private keys,
:mod:`sigshare.keyring.member_keys`) and ``custodian.toml`` (the pinned custodian's public
signing key, mode 0600). Nothing here talks gRPC: the hub is reached through
:class:`~sigshare.client.hub_client.HubClient`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sigshare.client.errors import HubProtocolError, HubUnavailableError
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import CustodianInfo, KeyRegistration, Recipient, SealedEnvelope
from sigshare.client.secret_ring import SecretRing
from sigshare.client.state import InstalledEpoch, LocalState, RefusedEnvelope
from sigshare.keyring import (
    EnvelopeAddressError,
    EnvelopeSealError,
    EnvelopeSignatureError,
    KeyringError,
    MemberKeys,
    OpenedEnvelope,
    load_member_keys,
    open_envelope,
    registration_fingerprint,
    registration_proof,
    seal_envelope,
    signing_fingerprint,
    write_member_keys,
)
from sigshare.keyring.member_keys import member_keys_path
from sigshare.sketch.keys import ForumSecret
from sigshare.sketch.private_files import (
    ExposedFileError,
    NotRegularFileError,
    read_private,
    write_private,
)

KEYS_DIR = "keys"
CUSTODIAN_FILE = "custodian.toml"
CUSTODIAN_FILE_VERSION = 1
_MAX_CUSTODIAN_FILE_BYTES = 16 * 1024


class SealedKeysError(Exception):
    """A problem with this member's sealed key distribution that the member must fix."""


class CustodianNotFoundError(SealedKeysError):
    """No custodian the hub lists has the signing key the member was told to trust."""


class CustodianPinError(SealedKeysError):
    """The pinned custodian file is unusable, or pinning would replace a different custodian."""


class NotSetUpError(SealedKeysError):
    """Member keys or the pinned custodian are missing for a command that needs both."""


class UnapprovedKeysError(SealedKeysError):
    """The caller's own keys are not the ones the hub approved (a custodian cannot sign)."""


class RecipientKeysChangedError(SealedKeysError):
    """A member's registered keys differ from those its last envelope was sealed to."""


class NoRecipientsError(SealedKeysError):
    """No member has approved keys: a rotation would seal the new secret to nobody."""


def keys_dir(state_dir: Path) -> Path:
    """Where a member's key files live: ``<state_dir>/keys``."""
    return state_dir / KEYS_DIR


def approve_command(name: str, fingerprint: str) -> str:
    """What the forum's admin runs to approve a registration (after checking it out of band)."""
    return f"sigshare-hub member approve-keys {name} {fingerprint}"


# ---------------------------------------------------------------------------------- custodian


@dataclass(frozen=True)
class PinnedCustodian:
    """The custodian whose signing key this member accepts envelopes from."""

    name: str
    signing_public: bytes = field(repr=False)
    fingerprint: str
    pinned_at: datetime


def custodian_path(directory: Path) -> Path:
    return directory / CUSTODIAN_FILE


def load_pinned_custodian(directory: Path) -> PinnedCustodian | None:
    """The pinned custodian of ``directory``; ``None`` if none is pinned.

    Refuses a file others could change (whoever can edit it chooses whose secrets are
    installed) and one whose fingerprint does not match its key."""
    path = custodian_path(directory)
    try:
        raw = read_private(path, limit=_MAX_CUSTODIAN_FILE_BYTES, forbidden=0o022)
    except FileNotFoundError:
        return None
    except (IsADirectoryError, NotRegularFileError):
        raise CustodianPinError(f"{path}: not a regular file") from None
    except ExposedFileError as exposed:
        raise CustodianPinError(
            f"{path}: permissions {exposed.permissions} let others change which custodian "
            f"this member trusts; run: chmod 600 {path}"
        ) from None
    except OSError as error:
        raise CustodianPinError(f"{path}: cannot open ({error.strerror})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        version = document.get("version")
        name, encoded = document["name"], document["signing_public"]
        fingerprint, pinned_at = document["fingerprint"], document["pinned_at"]
        if version != CUSTODIAN_FILE_VERSION:
            raise ValueError(f"unsupported version {version!r}")
        if not all(isinstance(v, str) for v in (name, encoded, fingerprint, pinned_at)):
            raise ValueError("name, signing_public, fingerprint and pinned_at must be strings")
        signing_public = base64.b64decode(encoded, validate=True)
        moment = datetime.fromisoformat(pinned_at)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, ValueError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise CustodianPinError(
            f"{path}: not a pinned custodian file ({detail}); pin the custodian again: "
            "sigshare keys trust FINGERPRINT --replace"
        ) from None
    if signing_fingerprint(signing_public) != fingerprint:
        raise CustodianPinError(
            f"{path}: the pinned key does not have the fingerprint the file names: it was "
            "altered; pin the custodian again: sigshare keys trust FINGERPRINT --replace"
        )
    return PinnedCustodian(name, signing_public, fingerprint, moment)


def _write_pin(directory: Path, pin: PinnedCustodian) -> Path:
    """Write ``custodian.toml`` atomically with mode 0600 (replacing any earlier pin)."""
    target = custodian_path(directory)
    body = (
        "# sigshare pinned custodian: sealed forum secrets are installed only if signed with\n"
        "# this key. Written by `sigshare keys trust`; check the fingerprint out of band.\n"
        f"version = {CUSTODIAN_FILE_VERSION}\n"
        f"name = {json.dumps(pin.name, ensure_ascii=False)}\n"
        f'signing_public = "{base64.b64encode(pin.signing_public).decode("ascii")}"\n'
        f'fingerprint = "{pin.fingerprint}"\n'
        f'pinned_at = "{pin.pinned_at.isoformat()}"\n'
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(target, body, overwrite=True, prefix=".sigshare-custodian-")
    except OSError as error:
        raise CustodianPinError(f"cannot write {target}: {error.strerror}") from None
    return target


def find_custodian(custodians: Sequence[CustodianInfo], fingerprint: str) -> CustodianInfo:
    """The listed custodian whose signing key has ``fingerprint`` (computed here from the key,
    not taken from the hub's word)."""
    for custodian in custodians:
        if signing_fingerprint(custodian.signing_public) == fingerprint:
            return custodian
    listed = ", ".join(f"{c.name} ({signing_fingerprint(c.signing_public)})" for c in custodians)
    raise CustodianNotFoundError(
        f"no custodian on the hub has the signing key {fingerprint} (the hub lists "
        f"{listed or 'no custodian with approved keys'}); check the fingerprint with the "
        "custodian out of band"
    )


@dataclass(frozen=True)
class PinOutcome:
    pin: PinnedCustodian
    path: Path
    changed: bool
    """False when exactly this custodian key was pinned already."""
    replaced: PinnedCustodian | None
    """The different custodian pinned before (only with ``replace``)."""


def pin_custodian(
    directory: Path, custodian: CustodianInfo, *, replace: bool, now: datetime
) -> PinOutcome:
    """Pin ``custodian``'s signing key; refuses to replace a different pin unless ``replace``."""
    fingerprint = signing_fingerprint(custodian.signing_public)
    current = load_pinned_custodian(directory)
    if current is not None and current.fingerprint == fingerprint:
        return PinOutcome(current, custodian_path(directory), changed=False, replaced=None)
    if current is not None and not replace:
        raise CustodianPinError(
            f"custodian {current.name} ({current.fingerprint}) is pinned already; replacing "
            "it means sealed forum secrets are accepted from the new key instead: check the new "
            "fingerprint out of band, then use --replace"
        )
    pin = PinnedCustodian(
        custodian.name, custodian.signing_public, fingerprint, now.replace(microsecond=0)
    )
    path = _write_pin(directory, pin)
    return PinOutcome(pin, path, changed=True, replaced=current)


# ---------------------------------------------------------------------------------- registration


@dataclass(frozen=True)
class RegistrationOutcome:
    name: str
    keys: MemberKeys
    created: bool
    """New keys were generated (none existed, or ``new_keys``)."""
    unchanged: bool
    """The hub held exactly these keys already."""
    registration: KeyRegistration


def member_keys_exist(directory: Path) -> bool:
    return member_keys_path(directory).exists()


def register_member_keys(
    client: HubClient, directory: Path, *, new_keys: bool
) -> RegistrationOutcome:
    """Register this member's keys with the hub, generating them first if there are none (or
    if ``new_keys``: then they replace the old ones).

    New keys are written before they are sent: if the hub's answer is lost, running this again
    registers the same keys (the hub answers ``unchanged``) instead of yet another pair."""
    created = new_keys or not member_keys_exist(directory)
    if created:
        keys = MemberKeys.generate()
        write_member_keys(directory, keys, overwrite=new_keys)
    else:
        keys = load_member_keys(directory)
    name = client.key_status().name
    result = client.register_keys(
        keys.sealing_public, keys.signing_public, registration_proof(name, keys)
    )
    if result.registration.fingerprint != keys.fingerprint:
        raise HubProtocolError(
            f"the hub registered keys {result.registration.fingerprint}, not the ones sent "
            f"({keys.fingerprint})"
        )
    return RegistrationOutcome(name, keys, created, result.unchanged, result.registration)


# ---------------------------------------------------------------------------------- pickup


@dataclass
class PickupReport:
    """What one pickup did: the secrets it installed and the envelopes it newly refused."""

    set_up: bool
    """Member keys and a pinned custodian exist; without both nothing is fetched."""
    note: str | None = None
    """Why sealed distribution is not set up, when it is not."""
    installed: list[InstalledEpoch] = field(default_factory=list)
    refused: list[RefusedEnvelope] = field(default_factory=list)
    """Envelopes refused for the first time (a refusal is reported once, then recorded)."""


def not_set_up_reason(directory: Path) -> str | None:
    """Why this member does not pick up sealed secrets (``None``: it does)."""
    missing = []
    if not member_keys_exist(directory):
        missing.append("no member keys (sigshare keys register)")
    if not custodian_path(directory).exists():
        missing.append("no pinned custodian (sigshare keys trust FINGERPRINT)")
    if not missing:
        return None
    return "sealed key distribution is not set up: " + ", ".join(missing)


_REFUSAL_REASONS: tuple[tuple[type[KeyringError], str], ...] = (
    (EnvelopeSignatureError, "signature"),
    (EnvelopeAddressError, "address"),
    (EnvelopeSealError, "seal"),
    (KeyringError, "format"),
)


def pick_up_envelopes(
    client: HubClient, state: LocalState, ring: SecretRing, directory: Path, *, now: datetime
) -> PickupReport:
    """Fetch the envelopes addressed to this member and install each new forum secret.

    Envelopes are opened first and then judged in the order the custodian sealed them (by
    their signed creation time, not the order the hub sent), so a member that missed several
    rotations installs them oldest first."""
    reason = not_set_up_reason(directory)
    if reason is not None:
        return PickupReport(set_up=False, note=reason)
    keys = load_member_keys(directory)
    pin = load_pinned_custodian(directory)
    assert pin is not None, "not_set_up_reason found the pin"
    name = client.key_status().name
    pickup = _Pickup(state, ring, now, PickupReport(set_up=True))
    known = {e.envelope_sha256 for e in state.installed_epochs() if e.envelope_sha256}
    opened: list[tuple[bytes, OpenedEnvelope]] = []
    for envelope in client.fetch_envelopes():
        digest = hashlib.sha256(envelope.envelope).digest()
        if digest in known:
            continue
        try:
            opened.append(
                (
                    digest,
                    open_envelope(
                        envelope.envelope,
                        recipient=name,
                        keys=keys,
                        custodian_signing_public=pin.signing_public,
                    ),
                )
            )
        except KeyringError as error:
            code = next(code for cls, code in _REFUSAL_REASONS if isinstance(error, cls))
            # Unopened, so only the hub's word names its key epoch and custodian.
            pickup.refuse(digest, envelope.key_id, envelope.custodian, code, str(error))
    opened.sort(key=lambda item: (item[1].header.created_at, item[1].header.key_id))
    for digest, envelope_opened in opened:
        pickup.judge(digest, envelope_opened)
    return pickup.report


@dataclass
class _Pickup:
    """One pickup's judgement of the envelopes it opened, and what it did about them."""

    state: LocalState
    ring: SecretRing
    now: datetime
    report: PickupReport

    def refuse(self, digest: bytes, key_id: str, custodian: str, reason: str, message: str) -> None:
        """Record a refusal; report it unless this envelope was refused so before."""
        refusal = RefusedEnvelope(
            envelope_sha256=digest,
            key_id=key_id,
            custodian=custodian,
            reason=reason,
            message=message,
            at=self.now,
        )
        if self.state.record_refused_envelope(refusal):
            self.report.refused.append(refusal)

    def judge(self, digest: bytes, opened: OpenedEnvelope) -> None:
        """Install an opened envelope's secret if it is news; refuse a conflicting or stale one."""
        header = opened.header
        installed = self.ring.get(header.key_id)
        if installed is not None:
            if hmac.compare_digest(installed.secret, opened.secret.secret):
                return  # the same secret again (another copy, or the configured file)
            self.refuse(
                digest,
                header.key_id,
                header.custodian,
                "conflict",
                f"the hub sent a second, different secret for key epoch {header.key_id} (the "
                f"installed one is {self.ring.path_of(header.key_id)}); not installed; tell the "
                "custodian",
            )
            return
        epochs = self.state.installed_epochs()
        if epochs and header.created_at < epochs[-1].created_at:
            newest = epochs[-1]
            self.refuse(
                digest,
                header.key_id,
                header.custodian,
                "replay",
                f"the envelope for key epoch {header.key_id} was sealed at "
                f"{header.created_at.isoformat()}, before the newest installed one "
                f"({newest.key_id}, sealed at {newest.created_at.isoformat()}): a replayed or "
                "superseded rotation; not installed; tell the custodian",
            )
            return
        path = self.ring.install(opened.secret)
        epoch = InstalledEpoch(
            key_id=header.key_id,
            created_at=header.created_at,
            activate_at=header.activate_at,
            custodian=header.custodian,
            installed_at=self.now,
            path=path,
            envelope_sha256=digest,
        )
        self.state.record_installed_epoch(epoch)
        self.report.installed.append(epoch)


# ---------------------------------------------------------------------------------- rotation


@dataclass(frozen=True)
class RotationReport:
    key_id: str
    custodian: str
    recipients: tuple[Recipient, ...]
    unregistered: tuple[str, ...]
    """Active members without approved keys: they received nothing."""
    rotation_due: tuple[str, ...]
    """Why the hub said a rotation was due (this one satisfies it)."""
    first_sealed: tuple[Recipient, ...]
    """Members this custodian sealed to for the first time: their fingerprints are to be
    checked with them out of band (the hub's admin approved them, but the hub is not trusted)."""
    accepted_changes: tuple[Recipient, ...]
    """Members whose new keys the custodian accepted for this rotation."""
    total_bytes: int
    created_at: datetime
    activate_at: datetime | None
    path: Path
    """Where the new secret is kept (the custodian seals it to members who join later)."""


def rotate_forum_secret(
    client: HubClient,
    state: LocalState,
    ring: SecretRing,
    directory: Path,
    *,
    key_id: str,
    activate_at: datetime | None,
    now: datetime,
    accept_new_keys: Sequence[str] = (),
) -> RotationReport:
    """Generate the forum secret of epoch ``key_id``, seal and sign one envelope per recipient
    and upload them; keep the secret beside the configured one once the hub accepted them.

    The secret is written under a temporary name before anything is sent and renamed into
    place only after the upload succeeded; a refused upload deletes it and changes nothing.

    Each member's keys are pinned on first sight: a member whose registered keys differ from
    those its previous envelope was sealed to is refused (:class:`RecipientKeysChangedError`)
    unless named in ``accept_new_keys`` — an operator approving keys of its own in a member's
    name would otherwise receive the secret."""
    keys = load_member_keys(directory)
    status = client.key_status()
    if status.approved is None or status.approved.fingerprint != keys.fingerprint:
        approved = status.approved.fingerprint if status.approved else "none"
        raise UnapprovedKeysError(
            f"your keys {keys.fingerprint} are not the approved keys of {status.name} "
            f"(approved: {approved}); members accept only envelopes signed with approved "
            "custodian keys: run `sigshare keys register` and have the admin run "
            f"{approve_command(status.name, keys.fingerprint)}"
        )
    listed = client.list_recipients()
    if not listed.recipients:
        raise NoRecipientsError(
            "no member has approved keys: a rotation would reach nobody; members run "
            "`sigshare keys register` and the forum's admin approves their keys first"
        )
    for recipient in listed.recipients:
        computed = registration_fingerprint(
            recipient.keys.sealing_public, recipient.keys.signing_public
        )
        if computed != recipient.keys.fingerprint:
            raise HubProtocolError(
                f"the hub lists {recipient.name}'s keys as {recipient.keys.fingerprint}, but "
                f"they are {computed}: not sealing to keys whose fingerprint does not match"
            )
    known = state.sealed_recipients()
    changed = [
        recipient
        for recipient in listed.recipients
        if known.get(recipient.name, recipient.keys.fingerprint) != recipient.keys.fingerprint
    ]
    refused = [r for r in changed if r.name not in accept_new_keys]
    if refused:
        listing = "; ".join(
            f"{r.name}: sealed to {known[r.name]} before, now {r.keys.fingerprint}" for r in refused
        )
        options = " ".join(f"--accept-new-keys {r.name}" for r in refused)
        raise RecipientKeysChangedError(
            f"members' keys changed since your last rotation ({listing}): check each new "
            f"fingerprint with its member out of band, then run the rotation again with {options}"
        )
    created_at = now.astimezone(UTC).replace(microsecond=0)
    secret = ForumSecret.generate(key_id)
    staged = ring.stage(secret)
    try:
        envelopes = [
            SealedEnvelope(
                key_id=key_id,
                recipient=recipient.name,
                custodian=status.name,
                recipient_fingerprint=recipient.keys.fingerprint,
                created_at=created_at,
                activate_at=activate_at,
                envelope=seal_envelope(
                    secret,
                    recipient=recipient.name,
                    recipient_sealing_public=recipient.keys.sealing_public,
                    recipient_signing_public=recipient.keys.signing_public,
                    custodian=status.name,
                    custodian_keys=keys,
                    created_at=created_at,
                    activate_at=activate_at,
                ),
            )
            for recipient in listed.recipients
        ]
        result = client.upload_envelopes(key_id, activate_at, envelopes)
    except HubUnavailableError as error:
        staged.discard()
        raise HubUnavailableError(
            f"{error.message}; whether the hub stored rotation {key_id} is unknown: "
            "`sigshare-hub keys status` shows it; if it is not there, run the rotation again, "
            "and if it is, rotate again under a new key id (this secret was not kept)",
            status=error.status,
        ) from None
    except BaseException:
        staged.discard()
        raise
    path = staged.commit()
    state.record_sealed_recipients(
        {recipient.name: recipient.keys.fingerprint for recipient in listed.recipients}, now
    )
    state.record_installed_epoch(
        InstalledEpoch(
            key_id=key_id,
            created_at=created_at,
            activate_at=activate_at,
            custodian=status.name,
            installed_at=now,
            path=path,
            envelope_sha256=None,
        )
    )
    return RotationReport(
        key_id=key_id,
        custodian=status.name,
        recipients=listed.recipients,
        unregistered=listed.unregistered,
        rotation_due=listed.rotation_due,
        first_sealed=tuple(r for r in listed.recipients if r.name not in known),
        accepted_changes=tuple(changed),
        total_bytes=result.total_bytes,
        created_at=created_at,
        activate_at=activate_at,
        path=path,
    )
