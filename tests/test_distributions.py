"""The two distributions as an operator installs them: wheels built by scripts/build_wheels.py,
installed with ``pip install --find-links`` into a fresh virtualenv that has never seen this
checkout, and run from a directory outside it.

One test on purpose: the build and the install take most of its time, and pytest-xdist would
repeat a shared fixture on every worker that runs one of several tests.

The fresh virtualenv is created ``--without-pip`` and this interpreter's pip installs into it
(``pip --python``): the same resolver and the same wheels, without bootstrapping a second pip.
Dependencies come from the package index (pip's cache keeps that quick), constrained to the
versions the rest of the suite runs (requirements/dev.txt). ``--no-compile`` skips
byte-compiling the dependencies, which would otherwise take most of the install time.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from sigshare.hub.services.principals import authenticate
from sigshare.hub.storage.database import make_engine, session_scope
from sigshare.hub.storage.migrate import head_revision
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.keys import load_secret_file

ROOT = Path(__file__).resolve().parent.parent
HUB_PACKAGE = ROOT / "hub" / "src" / "sigshare" / "hub"
CLIENT_SOURCES = ROOT / "client" / "src" / "sigshare"
INSTALL_TIMEOUT = 300.0
COMMAND_TIMEOUT = 60.0
START_TIMEOUT = 30.0

PACKAGE_DATA = {
    # package → files (globs, relative to the package) that must ship with identical bytes
    "sigshare.hub": (
        HUB_PACKAGE,
        (
            "py.typed",
            "storage/migrations/env.py",
            "storage/migrations/script.py.mako",
            "storage/migrations/versions/*.py",
            "web/templates/*.html",
            "web/static/*",
        ),
    ),
    "sigshare.client": (CLIENT_SOURCES / "client", ("py.typed",)),
    "sigshare.keyring": (CLIENT_SOURCES / "keyring", ("py.typed",)),
    "sigshare.sketch": (CLIENT_SOURCES / "sketch", ("py.typed",)),
    "sigshare.v1": (CLIENT_SOURCES / "v1", ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py*")),
}

INSPECT_INSTALLED = """
import hashlib, importlib.resources, json, sys
import sigshare.client.cli, sigshare.hub.cli, sigshare.v1.hub_pb2_grpc
wanted = json.loads(sys.argv[1])
found = {}
for package, names in wanted.items():
    root = importlib.resources.files(package)
    for name in names:
        item = root.joinpath(*name.split("/"))
        found[package + ":" + name] = (
            hashlib.sha256(item.read_bytes()).hexdigest() if item.is_file() else None
        )
modules = {m: sys.modules[m].__file__ for m in ("sigshare.client.cli", "sigshare.hub.cli",
                                                "sigshare.v1.hub_pb2_grpc")}
print(json.dumps({"files": found, "modules": modules}))
"""


def source_files() -> dict[str, dict[str, str]]:
    """Package → {relative path: SHA-256} of every file the wheels must carry."""
    expected: dict[str, dict[str, str]] = {}
    for package, (directory, patterns) in PACKAGE_DATA.items():
        files = expected.setdefault(package, {})
        for pattern in patterns:
            matches = sorted(directory.glob(pattern))
            assert matches, f"{pattern} matches nothing in {directory}"
            for path in matches:
                relative = path.relative_to(directory).as_posix()
                files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return expected


def run(
    command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, (
        f"{completed.args} exited {completed.returncode}\n"
        f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    )
    return completed.stdout


def wait_for_port(process: subprocess.Popen[str], port_file: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if port_file.exists() and (text := port_file.read_text().strip()):
            return int(text)
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError(f"no port in {port_file} after {START_TIMEOUT} s")


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode


def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=COMMAND_TIMEOUT) as response:  # loopback only
        return response.status, response.read()


def test_wheels_install_into_a_fresh_venv_and_run_outside_the_repository(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(ROOT)
    wheelhouse, venv, work, home = (tmp_path / d for d in ("wheels", "venv", "work", "home"))
    work.mkdir()
    home.mkdir()

    built = ok(
        run(
            [sys.executable, str(ROOT / "scripts" / "build_wheels.py"), "--no-build-isolation",
             str(wheelhouse)],
            cwd=work, timeout=INSTALL_TIMEOUT,
        )
    )  # fmt: skip
    wheels = sorted(path.name for path in wheelhouse.iterdir())
    with (ROOT / "client" / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert wheels == [f"sigshare_{name}-{version}-py3-none-any.whl" for name in ("client", "hub")]
    assert built.split() == [str(wheelhouse / name) for name in wheels]

    ok(run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work, timeout=60))
    python = venv / "bin" / "python"
    ok(
        run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
             "--no-compile", "--find-links", str(wheelhouse),
             "--constraint", str(ROOT / "requirements" / "dev.txt"), "sigshare-hub"],
            cwd=work, timeout=INSTALL_TIMEOUT,
        )
    )  # fmt: skip

    # Nothing inherited that could point back at the checkout or at another database.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8"}

    def sh(*command: str) -> subprocess.CompletedProcess[str]:
        return run(list(command), cwd=work, env=env, timeout=COMMAND_TIMEOUT)

    # The installed packages, not the checkout, and every data file byte for byte.
    expected = source_files()
    wanted = {package: sorted(files) for package, files in expected.items()}
    inspected = json.loads(ok(sh(str(python), "-c", INSPECT_INSTALLED, json.dumps(wanted))))
    for module, location in inspected["modules"].items():
        assert Path(location).is_relative_to(venv), (module, location)
    assert inspected["files"] == {
        f"{package}:{name}": digest
        for package, files in expected.items()
        for name, digest in files.items()
    }

    hub_help = ok(sh("sigshare-hub", "--help"))
    for command in ("audit", "db", "member", "params", "serve", "web"):
        assert f"\n  {command} " in hub_help
    client_help = ok(sh("sigshare", "--help"))
    for command in ("keygen", "init", "sync", "push", "pull"):
        assert f"\n  {command} " in client_help

    database = work / "state" / "hub.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    head = head_revision()
    upgraded = ok(sh("sigshare-hub", "--db", url, "db", "upgrade"))
    assert upgraded.strip() == f"{url}: upgraded from revision <empty> to {head}"
    status = json.loads(ok(sh("sigshare-hub", "--db", url, "db", "status", "--json")))
    assert status == {"database": url, "current": head, "head": head, "up_to_date": True}

    credential = ok(sh("sigshare-hub", "--db", url, "member", "add", "acme")).strip()
    listed = json.loads(ok(sh("sigshare-hub", "--db", url, "member", "list", "--json")))
    assert [(p["name"], p["role"], p["revoked_at"]) for p in listed["principals"]] == [
        ("acme", "member", None)
    ]
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            principal = authenticate(session, credential, datetime.now(UTC))
            assert principal is not None
            assert principal.name == "acme"
    finally:
        engine.dispose()

    ok(
        sh("sigshare-hub", "--db", url, "params", "set", "email", "--key-id", "k1",
           "--capacity", "1000", "--fpr", "0.001", "--max-members", "10")
    )  # fmt: skip
    shown = json.loads(ok(sh("sigshare-hub", "--db", url, "params", "show", "--json")))
    bloom = BloomParams.for_forum("email", "k1", 1000, 0.001, 10)
    (kind,) = shown["kinds"]
    assert (kind["kind"], kind["key_id"], kind["capacity"], kind["max_members"]) == (
        "email", "k1", 1000, 10,
    )  # fmt: skip
    assert (kind["m"], kind["k"], kind["digest"]) == (bloom.m, bloom.k, bloom.digest().hex())

    secret_file = work / "forum.secret"
    keygen = ok(sh("sigshare", "keygen", "--out", str(secret_file), "--key-id", "k2026a"))
    assert keygen.strip() == f"wrote forum secret k2026a to {secret_file} (mode 0600)"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = load_secret_file(secret_file)
    assert (secret.key_id, len(secret.secret)) == ("k2026a", 32)

    # Both servers start from the installed packages: gRPC health, console templates and assets.
    serve = subprocess.Popen(
        ["sigshare-hub", "--db", url, "serve", "--insecure", "--listen", "127.0.0.1:0",
         "--port-file", str(work / "serve.port")],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    web = subprocess.Popen(
        ["sigshare-hub", "--db", url, "web", "--insecure", "--listen", "127.0.0.1:0",
         "--port-file", str(work / "web.port")],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        grpc_port = wait_for_port(serve, work / "serve.port")
        ok(sh("sigshare-hub", "health", "--insecure", "--addr", f"127.0.0.1:{grpc_port}"))
        web_port = wait_for_port(web, work / "web.port")
        status_code, page = http_get(f"http://127.0.0.1:{web_port}/login")
        assert status_code == 200
        assert b'<input id="credential" name="credential" type="password"' in page
        status_code, css = http_get(f"http://127.0.0.1:{web_port}/static/console.css")
        assert (status_code, css) == (
            200,
            (HUB_PACKAGE / "web" / "static" / "console.css").read_bytes(),
        )
    finally:
        serve_exit, web_exit = stop(serve), stop(web)
    assert (serve_exit, web_exit) == (0, 0)
