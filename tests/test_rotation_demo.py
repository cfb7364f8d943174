"""``scripts/rotation-demo`` runs a whole forum-secret rotation over a served hub and prints
every command with its output: it must keep working, and say what the guides say it does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_rotation_demo_runs_a_rotation_without_a_gap(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "rotation-demo"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "rotation due (member m4 revoked)" in out
    assert "sealed to 3 members (m1, m2, m3)" in out
    installed = re.findall(r"^installed forum secret k2 \(from custodian secretariat", out, re.M)
    assert len(installed) == 3  # m1 and m2 on night 1, m3 on night 2; m4 never
    assert out.count("sent ahead under key epoch k2: email;") == 2
    assert re.search(r"│ kind\s+│\s+email │\s+k1 │\s+2 of 3 │", out), out
    after_switch = out.split("### right after the switch")[1].split("### night 2")[0]
    assert "sync: pushed email 6 (unchanged); 4 shared indicators" in after_switch
    revoked = out.rsplit("$ S m4 sync m4/emails.csv\n", 1)[1].splitlines()
    assert revoked[:2] == [
        "error: not authorised by the hub: unknown or revoked credential",
        "[exit 4]",
    ]
    assert "k2" not in (tmp_path / "forum" / "m4" / "config.toml").read_text()
    assert not (tmp_path / "forum" / "m4" / "forum.k2.secret").exists()
