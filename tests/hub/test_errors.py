"""Each hub error class declares once what every edge answers with it — the gRPC status, the
console's HTTP status, `sigshare-hub`'s exit code — and the edges read those declarations.

The table below is the answer every edge gave before the declarations existed (the gRPC table,
the CLI table and the console's ladder), pinned for every error class there is."""

from __future__ import annotations

import grpc
import pytest

from sigshare.client.exit_codes import ExitCode
from sigshare.hub import errors
from sigshare.hub.cli.errors import DatabaseMissingError, UnsupportedDatabaseError, exit_code_for
from sigshare.hub.rpc.status import status_of

EXPECTED: dict[type[errors.HubError], tuple[grpc.StatusCode, int, ExitCode]] = {
    errors.HubError: (grpc.StatusCode.INTERNAL, 400, ExitCode.FAILURE),
    errors.InvalidArgumentError: (grpc.StatusCode.INVALID_ARGUMENT, 400, ExitCode.INPUT),
    errors.SketchRejectedError: (grpc.StatusCode.INVALID_ARGUMENT, 400, ExitCode.INPUT),
    errors.NotFoundError: (grpc.StatusCode.NOT_FOUND, 404, ExitCode.INPUT),
    errors.RegistrationNotFoundError: (grpc.StatusCode.NOT_FOUND, 404, ExitCode.INPUT),
    errors.AlreadyExistsError: (grpc.StatusCode.ALREADY_EXISTS, 400, ExitCode.INPUT),
    errors.ConflictError: (grpc.StatusCode.ABORTED, 409, ExitCode.FAILURE),
    errors.DatabaseNotMigratedError: (grpc.StatusCode.UNAVAILABLE, 400, ExitCode.CONFIG),
    errors.AuditChainError: (grpc.StatusCode.INTERNAL, 400, ExitCode.FAILURE),
    errors.PreconditionError: (grpc.StatusCode.FAILED_PRECONDITION, 409, ExitCode.INPUT),
    errors.PermissionDeniedError: (grpc.StatusCode.PERMISSION_DENIED, 400, ExitCode.AUTH),
    UnsupportedDatabaseError: (grpc.StatusCode.INTERNAL, 400, ExitCode.CONFIG),
    DatabaseMissingError: (grpc.StatusCode.INTERNAL, 400, ExitCode.CONFIG),
}


def _all_subclasses(cls: type[errors.HubError]) -> set[type[errors.HubError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _all_subclasses(sub)
    return found


def test_every_error_class_is_pinned() -> None:
    assert _all_subclasses(errors.HubError) == set(EXPECTED)


def _instance(cls: type[errors.HubError]) -> errors.HubError:
    if cls is errors.NotFoundError:
        return errors.NotFoundError("submission", 1)
    if cls is errors.RegistrationNotFoundError:
        return errors.RegistrationNotFoundError("acme", "SHA256:abc")
    if cls is errors.DatabaseNotMigratedError:
        return errors.DatabaseNotMigratedError("0006", "0007")
    if cls is errors.AuditChainError:
        return errors.AuditChainError(3, "hash mismatch")
    return cls("refused")


@pytest.mark.parametrize(
    "cls", sorted(EXPECTED, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_each_edge_answers_what_the_class_declares(cls: type[errors.HubError]) -> None:
    error = _instance(cls)
    grpc_status, http_status, exit_code = EXPECTED[cls]
    assert status_of(error) is grpc_status
    assert error.http_status == http_status
    assert exit_code_for(error) is exit_code
