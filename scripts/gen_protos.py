"""Regenerate the Python stubs of proto/sigshare/v1/*.proto (one command, pinned tools).

    .venv/bin/python scripts/gen_protos.py            # writes client/src/sigshare/v1/
    .venv/bin/python scripts/gen_protos.py OUT_ROOT   # writes OUT_ROOT/sigshare/v1/ (drift test)

grpcio-tools and mypy-protobuf are pinned in requirements/dev.txt. The proto path mirrors the
import path, so `proto/sigshare/v1/hub.proto` becomes `sigshare.v1.hub_pb2` without rewriting.
The output is checked in; tests/test_protos.py fails when it differs from a fresh generation.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_root: Path) -> list[Path]:
    """Run protoc with the Python, gRPC and mypy plugins; return the files written."""
    bin_dir = Path(sys.executable).parent
    protos = sorted(PROTO_ROOT.glob("sigshare/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        *map(str, protos),
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit("protoc failed")
    return sorted(
        out_root / "sigshare" / "v1" / f"{proto.stem}{suffix}"
        for proto in protos
        for suffix in GENERATED
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "client" / "src"
    for path in generate(target):
        print(path.relative_to(target))
