"""The guides' commands, run: every command block of the member, operator and coordinator
guides runs on a loopback hub, unless it is marked skip with the reason it cannot
(:mod:`tests.docs.blocks`), so the guides cannot drift from the code unnoticed.

Each guide runs in one bash session in a temporary directory (:mod:`tests.docs.runner`). Its
plan below sets up what the guide assumes the reader already has, and lists every change made to
its blocks before they run: production addresses and paths, and placeholders such as ``ID``. A
substitution that no block uses any more fails the test, so the tables follow the guides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from sigshare.hub.storage import migrate
from tests.docs.blocks import Treatment, parse_guide
from tests.docs.runner import BIN, Plan, Substitution, run_guide
from tests.support.cli import invoke_hub, invoke_hub_json
from tests.support.tls import issue_forum_pki

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def member_guide(root: Path) -> Plan:
    """A hub serving TLS at ``localhost`` whose certificate chains to a root gRPC trusts by
    default (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, where a real forum would use a public CA),
    and the two files the forum gives a member (§3): its credential and the forum secret.
    Commands without ``--config`` find the configuration ``init`` wrote through
    ``$SIGSHARE_CONFIG``."""
    (root / "pki").mkdir()
    pki = issue_forum_pki(root / "pki", datetime.now(UTC))
    hub = f"sigshare-hub --db sqlite:///{root}/hub/sigshare-hub.db"
    setup = f"""
{hub} db upgrade
{hub} params set email --key-id k2026a --capacity 100000 --fpr 0.001
{hub} params set-minhash prompt --key-id k2026a
{hub} serve --listen 127.0.0.1:0 --tls-cert {pki.server.cert} --tls-key {pki.server.key} \\
    --log-level warning --port-file {root}/hub.port &
mkdir -p {root}/etc/sigshare {root}/var/lib
(umask 077; {hub} member add acme > {root}/etc/sigshare/hub.credential)
sigshare keygen --out {root}/etc/sigshare/forum.secret --key-id k2026a
"""
    return Plan(
        setup=setup,
        substitutions=[
            Substitution.literal("hub.forum.example:7443", f"localhost:$(cat {root}/hub.port)"),
            Substitution.literal("/etc/sigshare/", f"{root}/etc/sigshare/"),
            Substitution.literal("/var/lib/sigshare", f"{root}/var/lib/sigshare"),
        ],
        env={
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(pki.ca.cert),
            "SIGSHARE_CONFIG": f"{root}/etc/sigshare/config.toml",
        },
    )


def operator_guide(root: Path) -> Plan:
    """§1 builds its own forum in ``./forum``. The runbooks (§10) read the database URL from
    the systemd units' environment file (deploy/hub/systemd/hub.env.example): here its
    single-host variant, a new SQLite file, so the first deploy starts from an empty database.
    """
    hub_env = root / "etc" / "sigshare-hub" / "hub.env"
    setup = f"""
mkdir -p {hub_env.parent}
echo 'SIGSHARE_HUB_DB=sqlite:///{root}/var/lib/sigshare-hub/hub.db' > {hub_env}
"""
    return Plan(
        setup=setup,
        substitutions=[
            # A free port rather than 7443, announced in a file the later blocks read.
            Substitution.literal(
                "--listen 127.0.0.1:7443 &", f"--listen 127.0.0.1:0 --port-file {root}/hub.port &"
            ),
            Substitution.literal("127.0.0.1:7443", f"127.0.0.1:$(cat {root}/hub.port)"),
            Substitution.literal("~/src/sigshare", str(REPO)),
            Substitution.literal("/etc/sigshare-hub/hub.env", str(hub_env)),
        ],
        tools=("jq",),  # §10.3 turns `params show --json` into commands with it
    )


def coordinator_guide(root: Path) -> Plan:
    """The demo's forum in the temporary directory rather than /tmp, and its console in the
    background on a free port, where the reader runs it in a terminal of its own and opens it in
    a browser."""
    return Plan(
        setup="",
        substitutions=[
            # scripts/demo runs scripts/dev-env, which may reinstall .venv under the running
            # tests, and then `.venv/bin/sigshare demo`.
            Substitution.literal("scripts/demo", "sigshare demo"),
            Substitution.literal("/tmp/forum-demo", f"{root}/forum-demo"),
            Substitution.literal(".venv/bin/", f"{BIN}/"),
            Substitution.literal(
                "web --insecure --listen 127.0.0.1:8080",
                f"web --insecure --listen 127.0.0.1:0 --port-file {root}/web.port &",
            ),
            Substitution.word(
                "ID", lambda: _newest_indicator(f"sqlite:///{root}/forum-demo/hub.db")
            ),
        ],
    )


def _newest_indicator(url: str) -> str:
    """The id of the newest shared indicator of the hub database at ``url``."""
    listing = invoke_hub_json(url, "review", "indicators", "--page-size", "1")
    return str(listing["indicators"][0]["id"])


GUIDES: dict[str, Callable[[Path], Plan]] = {
    "member-guide.md": member_guide,
    "operator-guide.md": operator_guide,
    "coordinator-guide.md": coordinator_guide,
}


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_block_is_run_or_marked(guide: str) -> None:
    parsed = parse_guide(DOCS / guide)
    assert parsed.problems == ()
    assert [block for block in parsed.blocks if block.treatment is Treatment.RUN]


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_commands_run(guide: str, tmp_path: Path) -> None:
    run_guide(DOCS / guide, GUIDES[guide](tmp_path), tmp_path)


def test_upgrade_runbook_quotes_this_release_s_upgrade(tmp_path: Path) -> None:
    """The operator guide's upgrade runbook (§10.2) quotes what the commands print for the
    upgrade to this release: a database at the previous revision, code at the newest."""
    head = migrate.head_revision()
    previous = ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(head).down_revision
    assert isinstance(previous, str)
    guide = " ".join((DOCS / "operator-guide.md").read_text(encoding="utf-8").split())
    first, second = (f"sqlite:///{tmp_path}/{name}.db" for name in ("first", "second"))
    for url in (first, second):
        migrate.upgrade(url, previous)

    def message(url: str, *args: str) -> str:
        """What ``sigshare-hub --db URL ARGS`` prints after the URL it names first."""
        return invoke_hub(url, *args).stdout.strip().removeprefix(f"{url}: ")

    def one_line(url: str, *args: str) -> str:
        """The JSON document a command prints, on one line with the URL elided, as the guide
        shows it."""
        document = json.loads(invoke_hub(url, *args, "--json").stdout)
        items = ", ".join(f'"{key}": {json.dumps(value)}' for key, value in document.items())
        return "{" + items.replace(json.dumps(url), "…") + "}"

    status = invoke_hub(first, "db", "status", "--json")
    assert status.exit_code == 3
    quoted = [
        json.loads(status.stdout)["error"],
        message(first, "db", "upgrade"),
        message(first, "db", "upgrade"),
        one_line(first, "db", "status"),
        one_line(second, "db", "upgrade"),
        # What the previous release's `db upgrade` says of a database at this release's head.
        f"Can't locate revision identified by '{head}'",
    ]
    assert [text for text in quoted if text not in guide] == []
