"""The server's deployment files and the GitHub workflows, checked without an engine.

This machine has no Docker engine, no helm and no network: the image build, `docker
compose up`, the signed-in round trip against Keycloak, `helm lint`, `helm template` and
kubeconform run in .github/workflows/server-image.yml (the skipped tests at the end say
so). Here: the workflows and the compose file against their JSON schemas
(check-jsonschema's vendored copies, offline), every HUSHCHAT_SYNC_* name the files set
against the server's settings, every `.Values` reference of the chart against
values.yaml, probe and health-check paths against the server's routes, and the
Kubernetes-typed blocks of values.yaml against the Kubernetes schemas
(kubernetes-validate, offline).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from ruamel.yaml import YAML

from sync_server.routers import health
from sync_server.sealing import generate_secrets
from sync_server.settings import ENV_PREFIX, Settings, load_settings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
CHART = PACKAGING / "helm" / "hushchat-sync"
WORKFLOWS = ROOT / ".github" / "workflows"
SERVER_WORKFLOW = WORKFLOWS / "server-image.yml"
#: Installed next to the running Python (bin/ or Scripts\ with .exe on Windows).
CHECK_JSONSCHEMA = next(
    (
        path
        for name in ("check-jsonschema", "check-jsonschema.exe")
        if (path := Path(sys.executable).with_name(name)).exists()
    ),
    Path(sys.executable).with_name("check-jsonschema"),
)
SYNC_IMAGE = "hushchat-sync:local"
ENV_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]*[A-Z0-9]\b")
#: The Kubernetes version values.yaml's blocks are validated against.
KUBERNETES_VERSION = "1.30.0"


def load_yaml(path: Path) -> Any:
    """A YAML file as plain data (safe loader)."""
    return YAML(typ="safe", pure=True).load(path.read_text("utf-8"))


def unknown_settings(names: set[str]) -> list[str]:
    """The HUSHCHAT_SYNC_* names (a ``_FILE`` suffix allowed) that are no setting."""
    fields = set(Settings.model_fields)
    unknown = []
    for name in sorted(names):
        if not name.startswith(ENV_PREFIX):
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        if field not in fields and not (field.endswith("_file") and field[:-5] in fields):
            unknown.append(name)
    return unknown


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of its vendored schemas (no download)."""
    if not CHECK_JSONSCHEMA.exists():
        pytest.fail(f"{CHECK_JSONSCHEMA} is missing: install the dev lock (check-jsonschema).")
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def app_paths() -> set[str]:
    """The liveness and readiness paths the server serves."""
    return {getattr(route, "path", "") for route in health.router.routes}


# --- GitHub workflows -------------------------------------------------------------------


def test_workflows_match_the_github_workflow_schema() -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {"ci.yml", "release.yml", "server-image.yml"} <= {w.name for w in workflows}
    result = check_jsonschema("vendor.github-workflows", *workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"checked {len(workflows)} workflows; NOT run here: the workflows themselves")


def test_the_workflow_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = (WORKFLOWS / "release.yml").read_text("utf-8")
    broken.write_text(text.replace("runs-on: ubuntu-24.04", "run-on: ubuntu-24.04", 1), "utf-8")
    result = check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode != 0, result.stdout


def test_the_release_workflow_checks_the_tag_and_publishes_the_changelog_section() -> None:
    release = load_yaml(WORKFLOWS / "release.yml")
    assert release["on"]["push"]["tags"] == ["v*"]
    jobs = release["jobs"]
    assert set(jobs) >= {"check", "desktop", "python", "image", "publish"}
    matrix = jobs["desktop"]["strategy"]["matrix"]["os"]
    assert {os.split("-")[0] for os in matrix} == {"ubuntu", "macos", "windows"}
    text = (WORKFLOWS / "release.yml").read_text("utf-8")
    for needed in (
        "packaging/bootstrap.py package",
        "--self-test",
        "packaging/changelog_section.py",
        "packaging/providers/build.py",
        "packaging/windows/hushchat.iss",
        "hdiutil create",
        "appimagetool",
        "SHA256SUMS",
        "actions/attest-build-provenance@",
        "does not match the pyproject version",
    ):
        assert needed in text, needed
    assert (PACKAGING / "windows" / "hushchat.iss").is_file()
    assert set(jobs["publish"]["needs"]) == {"check", "desktop", "python", "image"}


# --- compose ----------------------------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    result = check_jsonschema("vendor.compose-spec", PACKAGING / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    print("NOT run here: docker compose config/up (no Docker engine); server-image.yml runs them")


def test_the_compose_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = (PACKAGING / "compose.yaml").read_text("utf-8")
    broken.write_text(text.replace("depends_on:", "depend_on:", 1), "utf-8")
    result = check_jsonschema("vendor.compose-spec", broken)
    assert result.returncode != 0, result.stdout


def test_unknown_settings_names_a_typo() -> None:
    names = {
        "HUSHCHAT_SYNC_OIDC_ISSUER",
        "HUSHCHAT_SYNC_DATABASE_URL_FILE",
        "HUSHCHAT_SYNC_OIDC_ISSUER_URL",
        "HUSHCHAT_SYNC_AUTOMIGRATE",
        "POSTGRES_DB",
    }
    assert unknown_settings(names) == ["HUSHCHAT_SYNC_AUTOMIGRATE", "HUSHCHAT_SYNC_OIDC_ISSUER_URL"]


def test_compose_sets_only_existing_settings_and_wires_its_services() -> None:
    compose = load_yaml(PACKAGING / "compose.yaml")
    services: dict[str, Any] = compose["services"]
    set_names: set[str] = set()
    for name, service in services.items():
        set_names |= set(service.get("environment", {}))
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        if service.get("image") == SYNC_IMAGE and "build" not in service:
            assert service.get("pull_policy") == "never", name  # never pulled from a registry
    assert set_names
    assert unknown_settings(set_names) == []
    # The names the header's `grep` writes into sync.env and escrow.env.
    header = (PACKAGING / "compose.yaml").read_text("utf-8").split("\nname:")[0]
    assert unknown_settings(set(ENV_NAME.findall(header))) == []
    # The key files' names as `gen-keys` prints them.
    generated = {f"{ENV_PREFIX}{n}" for n in ("SECRET_KEY", "ESCROW_PUBLIC_KEY", "ESCROW_KEK")}
    assert unknown_settings(generated | {f"{ENV_PREFIX}ESCROW_PRIVATE_KEY"}) == []


def _compose_settings(service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings one compose service starts with (its env files as the header makes them)."""
    compose = load_yaml(PACKAGING / "compose.yaml")
    spec = compose["services"][service]
    keys = {f"{ENV_PREFIX}{name}": value for name, value in generate_secrets().items()}
    files = {
        "sync.env": ("SECRET_KEY", "ESCROW_PUBLIC_KEY"),
        "escrow.env": ("ESCROW_KEK", "ESCROW_PRIVATE_KEY"),
    }
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for env_file in spec.get("env_file", []):
        for name in files[env_file]:
            monkeypatch.setenv(f"{ENV_PREFIX}{name}", keys[f"{ENV_PREFIX}{name}"])
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir(exist_ok=True)
    url = "postgresql+asyncpg://hushchat:pw@postgres/hushchat_sync\n"
    (secrets_dir / "database_url").write_text(url, "utf-8")
    for name, value in spec.get("environment", {}).items():
        value = str(value).replace("/run/secrets", str(secrets_dir))
        monkeypatch.setenv(name, value)
    return load_settings()


def test_the_compose_services_start_with_their_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = _compose_settings("sync", tmp_path, monkeypatch)
    assert sync.problems() == []
    assert sync.effective_database_url.startswith("postgresql+asyncpg://hushchat:pw@postgres/")
    assert sync.escrow_kek is None and sync.escrow_private_key is None
    assert sync.auto_migrate is False and sync.oidc_enabled
    escrow = _compose_settings("escrow", tmp_path, monkeypatch)
    assert escrow.escrow_process_problems() == []
    migrate = _compose_settings("migrate", tmp_path, monkeypatch)
    assert migrate.effective_database_url == sync.effective_database_url


def test_compose_oidc_settings_match_the_keycloak_realm() -> None:
    compose = load_yaml(PACKAGING / "compose.yaml")
    env = compose["services"]["sync"]["environment"]
    realm = json.loads((PACKAGING / "keycloak" / "hushchat-realm.json").read_text("utf-8"))
    issuer = env["HUSHCHAT_SYNC_OIDC_ISSUER"]
    assert issuer.endswith(f"/realms/{realm['realm']}")
    keycloak_command = " ".join(compose["services"]["keycloak"]["command"])
    hostname = re.search(r"--hostname=(\S+)", keycloak_command)
    assert hostname and issuer == f"{hostname.group(1)}/realms/{realm['realm']}"
    assert env["HUSHCHAT_SYNC_OIDC_JWKS_URL"].endswith(
        f"/realms/{realm['realm']}/protocol/openid-connect/certs"
    )
    clients = {client["clientId"]: client for client in realm["clients"]}
    assert env["HUSHCHAT_SYNC_OIDC_CLIENT_ID"] in clients
    for client in clients.values():
        audiences = {
            mapper["config"].get("included.custom.audience")
            for mapper in client.get("protocolMappers", [])
            if mapper["protocolMapper"] == "oidc-audience-mapper"
        }
        assert env["HUSHCHAT_SYNC_OIDC_AUDIENCE"] in audiences, client["clientId"]
        # Keycloak 25+ puts `sub` in the "basic" scope: without it tokens have no subject.
        assert "basic" in client["defaultClientScopes"], client["clientId"]
    # The CI round trip's password grant needs a client that allows it; the desktop's doesn't.
    from tests.deploy import compose_round_trip

    assert clients[compose_round_trip.CLIENT_ID]["directAccessGrantsEnabled"] is True
    assert clients["hushchat-desktop"]["directAccessGrantsEnabled"] is False
    users = {user["username"] for user in realm["users"]}
    assert compose_round_trip.USER in users


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_hashed_and_checks_a_real_route() -> None:
    text = (PACKAGING / "Dockerfile").read_text("utf-8")
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert re.search(r"pip install --require-hashes -r requirements-server\.lock", text)
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and user[-1] == "10001:10001"
    values = load_yaml(CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert unknown_settings(set(ENV_NAME.findall(text))) == []
    port = re.search(rf"{ENV_PREFIX}PORT=(\d+)", text)
    assert port and re.search(rf"^EXPOSE {port.group(1)}$", text, re.MULTILINE)
    healthcheck = text[text.index("HEALTHCHECK") :]
    path = re.search(r"/(readyz|healthz)", healthcheck)
    assert path and path.group(0) in app_paths()
    print("NOT run here: docker build (no Docker engine); server-image.yml builds the image")


def test_the_build_context_is_an_allow_list_that_has_every_copy_source() -> None:
    dockerfile = (PACKAGING / "Dockerfile").read_text("utf-8")
    ignore = (PACKAGING / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # .venv, .git, dist/ and data stay out
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    sources = set()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources |= set(line.split()[1:-1])
    assert sources
    assert sources <= allowed, sources - allowed


# --- Helm chart -------------------------------------------------------------------------


def _values_paths(data: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= _values_paths(value, path)
    return paths


def test_chart_metadata_and_version() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert chart["appVersion"] == pyproject["project"]["version"]  # the image tag default


def test_every_values_reference_in_the_templates_exists() -> None:
    values = _values_paths(load_yaml(CHART / "values.yaml"))
    referenced: dict[str, str] = {}
    for template in sorted((CHART / "templates").iterdir()):
        for ref in re.findall(r"\$?\.Values\.([A-Za-z0-9_.]+)", template.read_text("utf-8")):
            referenced[ref.rstrip(".")] = template.name
    assert len(referenced) > 20
    missing = {ref: name for ref, name in referenced.items() if ref not in values}
    assert missing == {}


def test_the_ci_values_files_only_set_existing_values() -> None:
    values = _values_paths(load_yaml(CHART / "values.yaml"))
    files = sorted((CHART / "ci").glob("*-values.yaml"))
    assert len(files) >= 2
    free_form = ("extraEnv.", "ingress.annotations.", "ingress.tls.", "extraEnvFrom.")
    for path in files:
        data = load_yaml(path)
        for key in _values_paths(data):
            assert key in values or key.startswith(free_form), (path.name, key)
        assert unknown_settings(set(data.get("extraEnv", {}))) == []


def test_chart_env_names_are_settings_and_probes_are_routes() -> None:
    templates = "\n".join(p.read_text("utf-8") for p in (CHART / "templates").iterdir())
    names = set(ENV_NAME.findall(templates))
    assert len(names) > 8
    assert unknown_settings(names) == []
    probes = set(re.findall(r"httpGet: \{ path: (\S+),", templates))
    assert probes == {"/healthz", "/readyz"}
    assert probes <= app_paths()
    assert "containerPort: 8080" in templates


def test_the_migration_job_and_auto_migrate_share_one_condition() -> None:
    # Regression: with SQLite (no migration Job) the pods got AUTO_MIGRATE=false from
    # database.migrateJob alone and refused to start on the fresh database.
    deployment = (CHART / "templates" / "deployment.yaml").read_text("utf-8")
    job = (CHART / "templates" / "migrate-job.yaml").read_text("utf-8")
    helper = 'include "hushchat-sync.migrateJob" .'
    auto_migrate = deployment[deployment.index("HUSHCHAT_SYNC_AUTO_MIGRATE") :].splitlines()[1]
    assert helper in auto_migrate, auto_migrate
    assert helper in job.splitlines()[0]


def _pod_manifest(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hushchat-sync"},
        "spec": {
            "selector": {"matchLabels": {"app": "hushchat-sync"}},
            "template": {
                "metadata": {"labels": {"app": "hushchat-sync"}},
                "spec": {
                    "securityContext": values["podSecurityContext"],
                    "nodeSelector": values["nodeSelector"],
                    "tolerations": values["tolerations"],
                    "affinity": values["affinity"],
                    "containers": [
                        {
                            "name": "hushchat-sync",
                            "image": "ghcr.io/example/hushchat-sync:0.1.0",
                            "securityContext": values["securityContext"],
                            "resources": values["resources"],
                        },
                        {
                            "name": "escrow",
                            "image": "ghcr.io/example/hushchat-sync:0.1.0",
                            "resources": values["escrow"]["resources"],
                        },
                    ],
                },
            },
        },
    }


def test_the_kubernetes_blocks_of_values_yaml_are_valid() -> None:
    values = load_yaml(CHART / "values.yaml")
    kubernetes_validate.validate(_pod_manifest(values), KUBERNETES_VERSION, strict=True)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "hushchat-sync"},
        "spec": {
            "accessModes": values["persistence"]["accessModes"],
            "resources": {"requests": {"storage": values["persistence"]["size"]}},
        },
    }
    kubernetes_validate.validate(claim, KUBERNETES_VERSION, strict=True)
    print("NOT run here: helm template + kubeconform (no helm); server-image.yml runs them")


def test_the_kubernetes_check_catches_a_wrong_block() -> None:
    values = load_yaml(CHART / "values.yaml")
    values["securityContext"] = {**values["securityContext"], "runAsNonroot": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(_pod_manifest(values), KUBERNETES_VERSION, strict=True)


# --- what only the workflow runs --------------------------------------------------------


def test_docker_build_compose_up_and_the_round_trip_run_in_the_workflow() -> None:
    text = SERVER_WORKFLOW.read_text("utf-8")
    for step in (
        "docker build -f packaging/Dockerfile -t hushchat-sync:local .",
        "docker compose -f packaging/compose.yaml up -d",
        "python tests/deploy/compose_round_trip.py",
    ):
        assert step in text, step
    pytest.skip(
        "NOT run here (no Docker engine): docker build, docker compose up, health/readiness "
        "and the signed-in sync round trip against Keycloak; "
        ".github/workflows/server-image.yml runs them"
    )


def test_helm_lint_template_and_kubeconform_run_in_the_workflow() -> None:
    text = SERVER_WORKFLOW.read_text("utf-8")
    for step in ("helm lint --strict", "helm template", "kubeconform -strict"):
        assert step in text, step
    pytest.skip(
        "NOT run here (no helm binary): helm lint, helm template and kubeconform of the "
        "rendered chart; .github/workflows/server-image.yml runs them"
    )
