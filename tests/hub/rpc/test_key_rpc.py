"""The Key and Custodian services end to end, over a real hub on loopback (SQLite and
PostgreSQL): which roles may call them, and a rotation from registration to a member opening
its envelope — keys registered with their proofs, approved by an admin, recipients listed,
genuine envelopes sealed and uploaded, fetched and opened — plus refusals as gRPC statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from sigshare.hub.domain import Role
from sigshare.hub.rpc.server import MAX_MESSAGE_BYTES
from sigshare.hub.services import keyring
from sigshare.hub.storage import session_scope
from sigshare.keyring import (
    MAX_ENVELOPE_BYTES,
    MemberKeys,
    open_envelope,
    registration_proof,
    seal_envelope,
)
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc
from tests.support.hub import ADMIN, COORDINATOR, RPC_TIMEOUT, RunningHub
from tests.support.hub_keys import SETUP_ACTOR, add_principals, keys_of, secret_of

KEEPER = "keeper"
KEY_ID = "epoch-2"
ACTIVATE_AT = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


def refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value  # the raised RpcError is also a grpc.Call
    return error.code(), error.details() or ""


class Keys:
    """The hub with a custodian, and raw stubs of the Key and Custodian services."""

    def __init__(self, hub: RunningHub) -> None:
        self.hub = hub
        hub.credentials.update(
            add_principals(hub.engine, {KEEPER: Role.CUSTODIAN}, datetime.now(UTC))
        )
        self.key_stub = hub_pb2_grpc.KeyServiceStub(hub.channel)
        self.custodian_stub = hub_pb2_grpc.CustodianServiceStub(hub.channel)

    def call(self, method: Callable[..., Any], request: Any, name: str) -> Any:
        return method(request, metadata=self.hub.metadata(name), timeout=RPC_TIMEOUT)

    def register(self, name: str, keys: MemberKeys | None = None) -> pb.RegisterKeysResponse:
        keys = keys or keys_of(name)
        request = pb.RegisterKeysRequest(
            sealing_public=keys.sealing_public,
            signing_public=keys.signing_public,
            proof=registration_proof(name, keys),
        )
        response: pb.RegisterKeysResponse = self.call(self.key_stub.RegisterKeys, request, name)
        return response

    def approve(self, name: str) -> None:
        """What `sigshare-hub member approve-keys NAME FINGERPRINT` does on the hub host."""
        with session_scope(self.hub.engine) as session:
            keyring.approve_keys(
                session,
                actor=SETUP_ACTOR,
                name=name,
                fingerprint=keys_of(name).fingerprint,
                now=datetime.now(UTC),
            )


@pytest.fixture
def keys(hub: RunningHub) -> Keys:
    return Keys(hub)


def _sealed(listed: pb.ListRecipientsResponse, created_at: datetime) -> list[pb.Envelope]:
    """The custodian's client at work: one envelope per listed recipient."""
    return [
        pb.Envelope(
            key_id=KEY_ID,
            recipient=recipient.name,
            custodian=KEEPER,
            recipient_fingerprint=recipient.keys.fingerprint,
            envelope=seal_envelope(
                secret_of(KEY_ID),
                recipient=recipient.name,
                recipient_sealing_public=recipient.keys.sealing_public,
                recipient_signing_public=recipient.keys.signing_public,
                custodian=KEEPER,
                custodian_keys=keys_of(KEEPER),
                created_at=created_at,
                activate_at=ACTIVATE_AT,
            ),
        )
        for recipient in listed.recipients
    ]


def _upload_request(envelopes: list[pb.Envelope]) -> pb.UploadEnvelopesRequest:
    request = pb.UploadEnvelopesRequest(key_id=KEY_ID, envelopes=envelopes)
    request.activate_at.FromDatetime(ACTIVATE_AT)
    return request


def test_each_role_calls_only_its_services(keys: Keys) -> None:
    hub = keys.hub
    denied = [
        (
            lambda: keys.call(keys.custodian_stub.ListRecipients, pb.ListRecipientsRequest(), "m1"),
            "member",
        ),
        (
            lambda: keys.call(keys.key_stub.GetKeyStatus, pb.GetKeyStatusRequest(), COORDINATOR),
            "coordinator",
        ),
        (
            lambda: keys.call(keys.key_stub.ListCustodians, pb.ListCustodiansRequest(), ADMIN),
            "admin",
        ),
        (
            lambda: keys.call(hub.member_stub.GetStatus, pb.GetStatusRequest(), KEEPER),
            "custodian",
        ),
        (
            lambda: keys.call(hub.review_stub.ListSubmissions, pb.ListSubmissionsRequest(), KEEPER),
            "custodian",
        ),
        (
            lambda: keys.call(
                hub.member_stub.GetParameters, pb.GetParametersRequest(), COORDINATOR
            ),
            "coordinator",
        ),
    ]
    for call, role in denied:
        assert refusal(call) == (
            grpc.StatusCode.PERMISSION_DENIED,
            f"role {role!r} may not call this service",
        )
    anonymous = refusal(
        lambda: keys.key_stub.GetKeyStatus(pb.GetKeyStatusRequest(), timeout=RPC_TIMEOUT)
    )
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "missing bearer credential")
    # A custodian reads the published parameters (their key ids), and nothing else of members'.
    published = keys.call(hub.member_stub.GetParameters, pb.GetParametersRequest(), KEEPER)
    assert {p.key_id for p in published.bloom} == {"epoch-1"}
    # The custodian and members may use the Key service; only the custodian the Custodian one.
    for name in (KEEPER, "m1"):
        status = keys.call(keys.key_stub.GetKeyStatus, pb.GetKeyStatusRequest(), name)
        assert (status.name, status.HasField("approved"), status.envelopes_waiting) == (
            name,
            False,
            0,
        )
    listed = keys.call(keys.custodian_stub.ListRecipients, pb.ListRecipientsRequest(), KEEPER)
    assert (list(listed.recipients), list(listed.unregistered)) == ([], ["m1", "m2", "m3", "m4"])
    added = keys.call(
        hub.admin_stub.AddPrincipal,
        pb.AddPrincipalRequest(name="secretariat", role=pb.ROLE_CUSTODIAN),
        ADMIN,
    )
    assert (added.principal.name, added.principal.role) == ("secretariat", pb.ROLE_CUSTODIAN)


def test_a_rotation_from_registration_to_a_member_opening_its_envelope(keys: Keys) -> None:
    hub = keys.hub
    registered = keys.register("m1")
    assert registered.unchanged is False
    assert registered.registration.fingerprint == keys_of("m1").fingerprint
    assert not registered.registration.HasField("approved_at")
    assert keys.register("m1").unchanged is True
    for name in ("m2", KEEPER):
        keys.register(name)
    for name in ("m1", "m2", KEEPER):
        keys.approve(name)

    status = keys.call(keys.key_stub.GetKeyStatus, pb.GetKeyStatusRequest(), "m1")
    assert (status.name, status.approved.fingerprint, status.HasField("pending")) == (
        "m1",
        keys_of("m1").fingerprint,
        False,
    )
    custodians = keys.call(keys.key_stub.ListCustodians, pb.ListCustodiansRequest(), "m1")
    assert [(c.name, c.signing_public, c.signing_fingerprint) for c in custodians.custodians] == [
        (KEEPER, keys_of(KEEPER).signing_public, keys_of(KEEPER).signing_fingerprint)
    ]
    listed = keys.call(keys.custodian_stub.ListRecipients, pb.ListRecipientsRequest(), KEEPER)
    assert [(r.name, r.keys.fingerprint) for r in listed.recipients] == [
        ("m1", keys_of("m1").fingerprint),
        ("m2", keys_of("m2").fingerprint),
    ]
    assert (list(listed.unregistered), list(listed.rotation_due)) == (["m3", "m4"], [])
    envelopes = _sealed(listed, datetime.now(UTC))

    partial = refusal(
        lambda: keys.call(
            keys.custodian_stub.UploadEnvelopes, _upload_request(envelopes[:1]), KEEPER
        )
    )
    assert partial == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "the forum's recipients changed since you listed them: no envelope for m2; run the "
        "rotation again",
    )
    uploaded = keys.call(keys.custodian_stub.UploadEnvelopes, _upload_request(envelopes), KEEPER)
    assert (uploaded.key_id, uploaded.recipients, uploaded.total_bytes) == (
        KEY_ID,
        2,
        sum(len(e.envelope) for e in envelopes),
    )
    again = refusal(
        lambda: keys.call(keys.custodian_stub.UploadEnvelopes, _upload_request(envelopes), KEEPER)
    )
    assert again[0] == grpc.StatusCode.ALREADY_EXISTS

    assert (
        keys.call(keys.key_stub.GetKeyStatus, pb.GetKeyStatusRequest(), "m1").envelopes_waiting == 1
    )
    fetched = keys.call(keys.key_stub.FetchEnvelopes, pb.FetchEnvelopesRequest(), "m1")
    (envelope,) = fetched.envelopes
    assert (envelope.key_id, envelope.recipient, envelope.custodian) == (KEY_ID, "m1", KEEPER)
    assert envelope.recipient_fingerprint == keys_of("m1").fingerprint
    assert envelope.activate_at.ToDatetime(tzinfo=UTC) == ACTIVATE_AT
    opened = open_envelope(
        envelope.envelope,
        recipient="m1",
        keys=keys_of("m1"),
        custodian_signing_public=custodians.custodians[0].signing_public,
    )
    assert opened.secret == secret_of(KEY_ID)
    assert (
        keys.call(keys.key_stub.GetKeyStatus, pb.GetKeyStatusRequest(), "m1").envelopes_waiting == 0
    )
    assert (
        list(keys.call(keys.key_stub.FetchEnvelopes, pb.FetchEnvelopesRequest(), "m3").envelopes)
        == []
    )
    with session_scope(hub.engine) as session:
        pickups = keyring.rotation_pickups(session, key_id=KEY_ID)
    assert pickups is not None
    assert pickups.not_fetched == ["m2"]


def test_malformed_registrations_are_invalid_arguments(keys: Keys) -> None:
    own = keys_of("m1")
    wrong_proof = pb.RegisterKeysRequest(
        sealing_public=own.sealing_public,
        signing_public=own.signing_public,
        proof=registration_proof("m2", own),
    )
    code, message = refusal(lambda: keys.call(keys.key_stub.RegisterKeys, wrong_proof, "m1"))
    assert (code, message.startswith("the registration proof does not verify for 'm1'")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        True,
    )
    short = pb.RegisterKeysRequest(sealing_public=b"\x01" * 10, signing_public=own.signing_public)
    code, message = refusal(lambda: keys.call(keys.key_stub.RegisterKeys, short, "m1"))
    assert (code, message.startswith("a sealing public key is 1216 bytes")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        True,
    )


def test_an_upload_for_a_large_forum_fits_in_one_message(keys: Keys) -> None:
    """Five hundred envelopes of the largest size reach the service (which then judges them)
    instead of being cut off by the server's message limit."""
    keys.register(KEEPER)
    keys.approve(KEEPER)
    envelopes = [
        pb.Envelope(
            key_id=KEY_ID,
            recipient=f"member-{number:03d}",
            custodian=KEEPER,
            recipient_fingerprint=keys_of("m1").fingerprint,
            envelope=bytes(MAX_ENVELOPE_BYTES),
        )
        for number in range(500)
    ]
    request = _upload_request(envelopes)
    assert request.ByteSize() < MAX_MESSAGE_BYTES
    code, message = refusal(lambda: keys.call(keys.custodian_stub.UploadEnvelopes, request, KEEPER))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("the envelope for 'member-000' is not a valid envelope: ")
