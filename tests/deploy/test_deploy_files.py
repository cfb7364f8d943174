"""The deployment files, checked with the tools that consume them, offline.

What cannot run on a CI machine (a systemd boot, a container engine, a cluster) is checked by
the real validators: ``systemd-analyze verify`` for the units (with the executable pointed at a
stand-in, since nothing is installed under /opt), the Kubernetes API schemas
(``kubernetes-validate``, strict: unknown fields fail) for the manifests, the Compose
specification's JSON schema (``check-jsonschema``) for the compose file, and ``haproxy -c`` for
the load balancer's configuration. deploy/README.md says which files were run and which only
validated.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sigshare.client.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "hub" / "systemd").glob("*.service")) + sorted(
    (DEPLOY / "member" / "systemd").glob("*.[st]*")
)
MANIFESTS = sorted(DEPLOY.glob("*/kubernetes/*.yaml"))
KUBERNETES_VERSION = "1.30"
INSTALLED = ("/opt/sigshare/bin/sigshare-hub", "/opt/sigshare/bin/sigshare")


def _tool(name: str) -> str:
    """A system tool the check needs: skipped outside CI if missing, a failure in CI."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return found


def test_every_deploy_file_is_checked() -> None:
    assert {unit.name for unit in UNITS} >= {
        "sigshare-hub.service",
        "sigshare-hub-web.service",
        "sigshare-hub-migrate.service",
        "sigshare-sync.service",
        "sigshare-sync.timer",
    }
    assert {path.relative_to(DEPLOY).as_posix() for path in MANIFESTS} == {
        "hub/kubernetes/hub.yaml",
        "member/kubernetes/cronjob.yaml",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_systemd_units_verify_cleanly(unit: Path, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    stand_in = tmp_path / "bin" / "sigshare-stand-in"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    # Every unit of the directory beside it: what it requires or starts is loaded and checked too.
    for sibling in unit.parent.glob("*.*"):
        if sibling.suffix not in {".service", ".timer"}:
            continue
        text = sibling.read_text()
        for path in INSTALLED:
            text = text.replace(path, str(stand_in))
        (tmp_path / sibling.name).write_text(text)
    copy = tmp_path / unit.name
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 on unknown keys and bad values too (it only warns): any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    analyze = _tool("systemd-analyze")
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n")
    result = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Unknown key 'ProtectSystm'" in result.stdout + result.stderr


MEMBER = DEPLOY / "member"
NEEDS_A_PERSON = {ExitCode.USAGE, ExitCode.CONFIG, ExitCode.AUTH, ExitCode.INPUT, ExitCode.REJECTED}
"""Exit codes that retrying cannot clear; a partial run (8) cannot clear by retrying either, but
its work was done, so schedulers count it as done and alert on it."""
MAY_CLEAR = {ExitCode.FAILURE, ExitCode.NETWORK, ExitCode.BUSY}


def _service_settings(unit: Path) -> dict[str, list[str]]:
    """``[Service]`` settings of a unit file: key → values, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_every_exit_code_has_its_place_in_the_member_sync_unit() -> None:
    assert set(ExitCode) == {ExitCode.OK, ExitCode.PARTIAL} | NEEDS_A_PERSON | MAY_CLEAR
    settings = _service_settings(MEMBER / "systemd" / "sigshare-sync.service")
    success = {0} | {int(code) for code in " ".join(settings["SuccessExitStatus"]).split()}
    prevented = {int(code) for code in " ".join(settings["RestartPreventExitStatus"]).split()}
    assert success == {ExitCode.OK, ExitCode.PARTIAL}
    assert prevented == NEEDS_A_PERSON
    assert settings["Restart"] == ["on-failure"]  # the remaining codes, MAY_CLEAR, are retried


@pytest.mark.parametrize(("status", "logged"), [("8", True), ("0", False), ("7", False)])
def test_a_partial_sync_is_logged_at_warning_priority(status: str, logged: bool) -> None:
    """The unit's ExecStopPost= line, run as systemd runs it (``$$`` is a literal ``$``)."""
    (command,) = _service_settings(MEMBER / "systemd" / "sigshare-sync.service")["ExecStopPost"]
    argv = shlex.split(command.replace("$$", "$"))
    assert argv[:2] == ["/bin/sh", "-c"]
    result = subprocess.run(
        argv,
        env={"EXIT_STATUS": status, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = "<4>sigshare sync was partial (exit 8): some kinds or families were skipped"
    assert result.stdout.startswith(expected) if logged else result.stdout == ""


def test_the_member_cronjob_fails_at_once_on_codes_a_retry_cannot_clear() -> None:
    (cronjob,) = [
        d for d in _documents(MEMBER / "kubernetes" / "cronjob.yaml") if d["kind"] == "CronJob"
    ]
    rules = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]  # type: ignore[index]
    fail_job = {
        code
        for rule in rules
        if rule["action"] == "FailJob"
        for code in rule["onExitCodes"]["values"]
    }
    assert fail_job == {int(code) for code in NEEDS_A_PERSON | {ExitCode.PARTIAL}}
    assert not fail_job & {int(code) for code in MAY_CLEAR}  # counted against backoffLimit


def test_the_cron_file_names_every_exit_code() -> None:
    lines = (MEMBER / "cron" / "sigshare-sync.cron").read_text().splitlines()
    comments = " ".join(line.lstrip("#").strip() for line in lines if line.startswith("#"))
    listed = ";" + comments.partition("The last line logged says the exit status:")[2]
    for code in ExitCode:
        assert re.search(rf"; {int(code)} [a-z]", listed), code


def _documents(path: Path) -> list[dict[str, object]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.parent.parent.name)
def test_kubernetes_manifests_match_the_api_schemas(manifest: Path) -> None:
    documents = _documents(manifest)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_an_unknown_field() -> None:
    document = next(
        d
        for d in _documents(DEPLOY / "hub" / "kubernetes" / "hub.yaml")
        if d["kind"] == "Deployment"
    )
    spec = dict(document["spec"])  # type: ignore[arg-type]
    spec["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**document, "spec": spec}, KUBERNETES_VERSION, strict=True)


def test_hub_manifests_probe_and_protect_every_component() -> None:
    kinds = {
        (d["kind"], d["metadata"]["name"])
        for d in _documents(  # type: ignore[index]
            DEPLOY / "hub" / "kubernetes" / "hub.yaml"
        )
    }
    assert kinds == {
        ("Secret", "hub-db"),
        ("Secret", "hub-tls"),
        ("Job", "hub-migrate"),
        ("PersistentVolumeClaim", "hub-blobs"),
        ("Deployment", "hub"),
        ("Deployment", "hub-web"),
        ("Service", "hub"),
        ("Service", "hub-web"),
        ("PodDisruptionBudget", "hub"),
        ("NetworkPolicy", "hub"),
    }
    for document in _documents(DEPLOY / "hub" / "kubernetes" / "hub.yaml"):
        if document["kind"] != "Deployment":
            continue
        pod = document["spec"]["template"]["spec"]  # type: ignore[index]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["readinessProbe"]
            assert container["livenessProbe"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            # Replicas and the console share one payload directory (ReadWriteMany claim).
            blob_dir = {e["name"]: e.get("value") for e in container["env"]}[
                "SIGSHARE_HUB_BLOB_DIR"
            ]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts[blob_dir] == "blobs"
        claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
        assert claims["blobs"] == {"claimName": "hub-blobs"}


def test_compose_file_matches_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    compose = DEPLOY / "hub" / "compose" / "compose.yaml"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    assert set(services) == {"postgres", "migrate", "hub-1", "hub-2", "lb", "web"}
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_compose_schema_check_can_fail(tmp_path: Path) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        "services:\n  hub:\n    image: x\n    healthcheck:\n      interval: often\n    imagee: y\n"
    )
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


def test_haproxy_configuration_is_valid(tmp_path: Path) -> None:
    """The compose file's HAProxy configuration, with its TLS files at a temporary path
    (``haproxy -c`` loads them), passes HAProxy's own check; the replicas' names need not
    resolve yet (``init-addr … none``)."""
    haproxy = _tool("haproxy")
    tls = tmp_path / "tls"
    tls.mkdir()
    key = tmp_path / "key.pem"
    certificate = tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", "/CN=lb"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tls / "lb.pem").write_bytes(certificate.read_bytes() + key.read_bytes())
    (tls / "ca.crt").write_bytes(certificate.read_bytes())
    config = tmp_path / "haproxy.cfg"
    source = (DEPLOY / "hub" / "compose" / "haproxy.cfg").read_text()
    config.write_text(source.replace("/etc/haproxy/tls", str(tls)))
    result = subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_haproxy_health_check_sends_what_the_load_balancer_test_proves() -> None:
    """The compose file's health check writes the same bytes as deploy/README.md documents and
    tests/hub/rpc/test_load_balancer.py sends to real replicas (which checks the README)."""
    readme = (DEPLOY / "README.md").read_text()
    config = (DEPLOY / "hub" / "compose" / "haproxy.cfg").read_text()
    sent = [line.split()[-1] for line in config.splitlines() if "tcp-check send-binary" in line]
    assert len(sent) == 1
    assert sent[0] in readme.split()
    assert "tcp-check expect binary 00000000020801" in config
