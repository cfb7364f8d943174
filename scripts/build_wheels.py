"""Build the wheels of both distributions (sigshare-client, sigshare-hub) into one directory.

    python3 scripts/build_wheels.py DIR               # the two wheels only
    python3 scripts/build_wheels.py --with-deps DIR   # plus every runtime dependency (offline)

Then install on the target machine, outside any checkout:

    python3 -m venv /opt/sigshare
    /opt/sigshare/bin/pip install --find-links DIR sigshare-hub      # or sigshare-client alone
    /opt/sigshare/bin/pip install --no-index --find-links DIR sigshare-hub   # from --with-deps

The hub pins ``sigshare-client`` to the same version, which no package index holds, so the hub
is always installed with ``--find-links`` pointing at the client's wheel. Each distribution is
built from a fresh copy of its sources (``src/``, ``pyproject.toml``, ``README.md``): an
in-tree build would reuse ``build/`` and ``*.egg-info`` left by earlier builds or by the
editable install, and could ship a module that has since been deleted.
Runs with any Python >= 3.11 that has pip; no third-party imports.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("client", "hub")
"""Source directories, in build order (the hub depends on the client)."""
COPIED = ("src", "pyproject.toml", "README.md")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


def project(directory: Path) -> dict[str, object]:
    with (directory / "pyproject.toml").open("rb") as handle:
        table = tomllib.load(handle)["project"]
    assert isinstance(table, dict)
    return table


def check_client_pin(root: Path) -> str:
    """The client version, after checking that the hub requires exactly that version."""
    client = project(root / "client")
    version = str(client["version"])
    pin = f"{client['name']}=={version}"
    dependencies = project(root / "hub")["dependencies"]
    assert isinstance(dependencies, list)
    if pin not in dependencies:
        raise SystemExit(
            f"hub/pyproject.toml must depend on {pin} (the client in client/ is {version})"
        )
    return version


def copy_sources(root: Path, staging: Path) -> list[Path]:
    """Copy each distribution's build inputs to ``staging``; return the copies."""
    copies = []
    for name in DISTRIBUTIONS:
        target = staging / name
        target.mkdir()
        for entry in COPIED:
            source = root / name / entry
            if source.is_dir():
                shutil.copytree(source, target / entry, ignore=SKIPPED)
            else:
                shutil.copy2(source, target / entry)
        copies.append(target)
    return copies


def pip(*arguments: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    completed = subprocess.run(command, check=False)  # noqa: S603 (fixed program, our arguments)
    if completed.returncode != 0:
        raise SystemExit(f"pip failed (exit {completed.returncode}): {' '.join(command)}")


def build(
    out: Path,
    *,
    root: Path = ROOT,
    with_deps: bool = False,
    build_isolation: bool = True,
    constraint: Path | None = None,
) -> list[Path]:
    """Build both wheels (and with ``with_deps`` their dependencies) into ``out``.

    Returns the two sigshare wheels, client first.
    """
    version = check_client_pin(root)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    isolation = [] if build_isolation else ["--no-build-isolation"]
    with tempfile.TemporaryDirectory(prefix="sigshare-wheels-") as staging:
        sources = copy_sources(root, Path(staging))
        pip(
            "wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir", str(out), *map(str, sources)
        )
    wheels = [out / f"sigshare_{name}-{version}-py3-none-any.whl" for name in DISTRIBUTIONS]
    missing = [wheel.name for wheel in wheels if not wheel.is_file()]
    if missing:
        raise SystemExit(f"pip reported success but did not write {', '.join(missing)}")
    if with_deps:
        constraints = ["--constraint", str(constraint)] if constraint else []
        pip(
            "wheel", "--quiet", "--find-links", str(out), "--wheel-dir", str(out),
            *constraints, f"sigshare-hub=={version}",
        )  # fmt: skip
    return wheels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, metavar="DIR", help="where to write the wheels")
    parser.add_argument(
        "--with-deps",
        action="store_true",
        help="also download or build every runtime dependency, for installs with --no-index",
    )
    parser.add_argument(
        "--constraint",
        type=Path,
        metavar="FILE",
        help="pip constraints for the dependencies (e.g. requirements/dev.txt: the tested pins)",
    )
    parser.add_argument(
        "--no-build-isolation",
        dest="build_isolation",
        action="store_false",
        help="build with this interpreter's setuptools instead of a fresh one from the index",
    )
    arguments = parser.parse_args(argv)
    wheels = build(
        arguments.out,
        with_deps=arguments.with_deps,
        build_isolation=arguments.build_isolation,
        constraint=arguments.constraint,
    )
    for wheel in wheels:
        print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
