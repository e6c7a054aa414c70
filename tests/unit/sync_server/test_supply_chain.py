"""Supply-chain pins: GitHub Actions by commit, container images by digest, and the
llama-server build checking its download before anything (pip included) reads it."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\b")


def test_workflow_actions_are_pinned_by_full_commit() -> None:
    uses = []
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.y*ml")):
        for line in workflow.read_text("utf-8").splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if match:
                uses.append((workflow.name, match.group(1), match.group(2).strip()))
    assert uses
    for name, action, comment in uses:
        if action.startswith("./"):
            continue  # a local action is pinned by this repository's own commit
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), (name, action)
        # The release the commit was taken from, for people and for Renovate.
        assert re.fullmatch(r"#\s*v\d+\.\d+\.\d+", comment), (name, action, comment)


def test_dockerfile_base_images_are_pinned_by_digest() -> None:
    dockerfile = (ROOT / "packaging" / "Dockerfile").read_text("utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert froms
    for image in froms:
        assert DIGEST.search(image), image
    for line in dockerfile.splitlines():
        if line.lower().startswith("# syntax="):
            assert DIGEST.search(line), line


def test_compose_images_are_pinned_by_digest_unless_built_here() -> None:
    compose = (ROOT / "packaging" / "compose.yaml").read_text("utf-8")
    images = re.findall(r"^\s+image:\s*(\S+)", compose, re.MULTILINE)
    assert images
    for image in images:
        if image == "hushchat-sync:local":  # built from packaging/Dockerfile by compose
            continue
        assert DIGEST.search(image), image


def test_helm_chart_can_pin_its_image_by_digest() -> None:
    chart = ROOT / "packaging" / "helm" / "hushchat-sync"
    values = (chart / "values.yaml").read_text("utf-8")
    assert re.search(r"^\s+digest:", values, re.MULTILINE)
    helpers = (chart / "templates" / "_helpers.tpl").read_text("utf-8")
    assert "{{ .Values.image.repository }}@{{ .Values.image.digest }}" in helpers


def _logging_tool(path: Path, log: Path, *, passthrough: str | None = None) -> None:
    """A stand-in for a program: logs its arguments; runs ``passthrough`` unless pip."""
    script = f'#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n'
    if passthrough:
        script += f'case " $* " in *" pip "*) exit 97;; esac\nexec "{passthrough}" "$@"\n'
    else:
        script += "exit 97\n"
    path.write_text(script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None, reason="needs bash")
def test_llama_server_build_refuses_a_tampered_sdist_before_using_it(tmp_path: Path) -> None:
    tools, log = tmp_path / "bin", tmp_path / "calls.log"
    tools.mkdir()
    log.touch()
    _logging_tool(tools / "python3", log, passthrough=sys.executable)
    for name in ("pip", "pip3", "cmake", "tar", "curl"):
        _logging_tool(tools / name, log)
    tampered = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    tampered.write_bytes(b"not the pinned sdist")
    env = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
        "HUSHCHAT_PEER_CACHE": str(tmp_path / "cache"),
        "LLAMA_SDIST_URL": tampered.as_uri(),
    }
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "build-llama-server")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    calls = log.read_text("utf-8").splitlines()
    # Only the download (Python, no pip) ran; nothing unpacked or built the file.
    assert calls and all(call.startswith("python3 - ") for call in calls), calls
    assert not (tmp_path / "cache" / "llama-server-0.3.36").exists()


def test_deployment_files_keep_the_escrow_private_key_away_from_the_server() -> None:
    """docs/server.md: the server process holds the escrow public key only; the private
    key and its KEK go to the escrow command alone (compose service, Helm CronJob)."""
    private = ("ESCROW_KEK", "ESCROW_PRIVATE_KEY")
    compose = (ROOT / "packaging" / "compose.yaml").read_text("utf-8")
    services = re.split(r"^  (?=\w[\w-]*:\n)", compose.split("\nservices:\n", 1)[1], flags=re.M)
    by_name = {block.split(":", 1)[0]: block for block in services if block.strip()}
    assert "escrow.env" not in by_name["sync"] and "escrow.env" not in by_name["migrate"]
    assert "escrow.env" in by_name["escrow"]
    assert '["escrow", "process"' in by_name["escrow"]

    chart = ROOT / "packaging" / "helm" / "hushchat-sync" / "templates"
    helpers = (chart / "_helpers.tpl").read_text("utf-8")
    shared, escrow_env = helpers.split('define "hushchat-sync.escrowEnv"', 1)
    server_env = shared.split('define "hushchat-sync.env"', 1)[1]
    assert "ESCROW_PUBLIC_KEY" in server_env
    assert not any(name in server_env for name in private)
    assert all(name in escrow_env for name in private)
    for template in chart.glob("*.yaml"):
        uses_escrow_env = "hushchat-sync.escrowEnv" in template.read_text("utf-8")
        assert uses_escrow_env == (template.name == "escrow-cronjob.yaml"), template.name
    cronjob = (chart / "escrow-cronjob.yaml").read_text("utf-8")
    assert '["escrow", "process", "--once"]' in cronjob
    assert "concurrencyPolicy: Forbid" in cronjob
