"""The checked-in stubs are exactly what scripts/gen_protos.py produces from proto/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
CHECKED_IN = ROOT / "client" / "src"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    written = _load_generator().generate(tmp_path)
    assert written, "no proto files found"
    stale = []
    for fresh in written:
        relative = fresh.relative_to(tmp_path)
        checked_in = CHECKED_IN / relative
        if not checked_in.exists() or checked_in.read_bytes() != fresh.read_bytes():
            stale.append(str(relative))
    assert not stale, f"stale generated code, run scripts/gen_protos.py: {stale}"


def test_no_generated_file_without_a_proto() -> None:
    protos = {path.stem for path in (ROOT / "proto" / "sigshare" / "v1").glob("*.proto")}
    generated = {
        path.name.split("_pb2")[0] for path in (CHECKED_IN / "sigshare" / "v1").glob("*_pb2*")
    }
    assert generated == protos


def test_stubs_import_under_their_proto_path() -> None:
    from sigshare.v1 import hub_pb2, hub_pb2_grpc

    assert hub_pb2.DESCRIPTOR.package == "sigshare.v1"
    assert hasattr(hub_pb2_grpc, "MemberServiceStub")
    chunk = hub_pb2.SubmitChunk(data=b"x")
    assert chunk.WhichOneof("part") == "data"
