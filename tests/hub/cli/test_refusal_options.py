"""``serve --refusal-burst/--refusals-per-minute``: the per-source limit on refused credentials
is the operator's to set (the limiter itself: tests/hub/services/test_refusal_limits.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc
from tests.support.processes import hub_command_serving

HUB = Path(sys.executable).with_name("sigshare-hub")
BAD = "sgs1_0123456789abcdef0123456789abcdef.not-a-secret"


@pytest.fixture
def serve_with_burst_one(sqlite_url: str, tmp_path: Path) -> Iterator[int]:
    with hub_command_serving(
        [
            *("--db", sqlite_url, "serve", "--insecure", "--listen", "127.0.0.1:0"),
            *("--refusal-burst", "1", "--refusals-per-minute", "0.5"),
        ],
        tmp_path / "serve.log",
        cwd=tmp_path,
    ) as (_, port):
        yield port


def test_serve_applies_the_refusal_limit_it_is_given(serve_with_burst_one: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{serve_with_burst_one}") as channel:
        stub = hub_pb2_grpc.MemberServiceStub(channel)
        codes = []
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetParameters(
                    pb.GetParametersRequest(),
                    metadata=(("authorization", f"Bearer {BAD}"),),
                    timeout=10,
                )
            codes.append(refused.value.code())
    # A burst of one: the first bad credential is checked and refused, the next ones are
    # refused unchecked (a refill of one per two minutes does not come back within the test).
    assert codes == [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ]


@pytest.mark.parametrize("command", ["serve", "web"])
@pytest.mark.parametrize(
    ("option", "value"), [("--refusal-burst", "0"), ("--refusals-per-minute", "0")]
)
def test_limits_must_be_positive(command: str, option: str, value: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(HUB), command, "--insecure", option, value],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert f"Invalid value for '{option}'" in result.stderr
