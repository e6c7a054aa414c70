"""The ``hushchat`` command as a subprocess: exit codes, one-line errors, probe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

ROOT = Path(__file__).resolve().parents[2]
HUSHCHAT = Path(sys.executable).with_name("hushchat")


def hushchat(
    *args: str, config: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    full_env.update(env or {})
    argv = [str(HUSHCHAT)]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "config.yml"
    path.write_text(
        f"""default_llm: local
llms:
  - provider_name: local
    type: openai
    base_url: {base_url}
    model_name: {MODEL_ALIAS}
    context_size: 512
    max_retries: 0
    timeout: 5
{extra}"""
    )
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hushchat: ")
    return lines[0]


def test_version_and_help() -> None:
    result = hushchat("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("hushchat ")
    result = hushchat("--help")
    assert result.returncode == 0
    for command in ("chat", "chats", "providers", "config", "vault"):
        assert command in result.stdout


def test_window_without_a_display_is_a_clear_error() -> None:
    result = hushchat(env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": ""})
    line = assert_one_line_error(result, 2)
    assert "no graphical display found" in line


def test_usage_error_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    result = hushchat("providers", "probe", "local", "--prompt", "x", "--max-tokens", "0",
                      config=config)  # fmt: skip
    assert result.returncode == 2
    assert "must be greater than 0" in result.stderr


def test_bad_config_names_file_line_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "llms:\n  - provider_name: a\n    type: olama\n"
        "    base_url: http://127.0.0.1:1\n    model_name: m\n"
    )
    line = assert_one_line_error(hushchat("providers", "list", config=config), 2)
    assert line == (
        f"hushchat: {config}:3: llms[0].type: 'olama' is not a provider type; "
        "did you mean 'ollama'?; known: anthropic, ollama, openai"
    )


def test_missing_config_named_explicitly(tmp_path: Path) -> None:
    line = assert_one_line_error(hushchat("config", "check", config=tmp_path / "nope.yml"), 2)
    assert "config file not found" in line


def test_no_config_means_defaults(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    result = hushchat("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "0 provider(s)" in result.stdout


def test_config_example_matches_committed_file() -> None:
    result = hushchat("config", "example")
    assert result.returncode == 0
    assert result.stdout == (ROOT / ".config.yml.example").read_text(encoding="utf-8")


def test_providers_list(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:8080/v1",
        "  - {provider_name: cloud, type: anthropic, base_url: 'https://api.anthropic.com',"
        " model_name: claude, locality: paid_cloud, api_key: '${ANTHROPIC_KEY}'}\n",
    )
    result = hushchat("providers", "list", config=config, env={"ANTHROPIC_KEY": "sk-ant-x"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "MODEL", "LOCALITY", "BASE", "URL"]
    assert lines[1].split()[:4] == ["*local", "openai", MODEL_ALIAS, "on_prem"]
    assert lines[2].split()[:4] == ["cloud", "anthropic", "claude", "paid_cloud"]
    assert "sk-ant-x" not in result.stdout + result.stderr


def test_unknown_provider_name(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:8080/v1")
    line = assert_one_line_error(hushchat("providers", "models", "locl", config=config), 2)
    assert "no provider named 'locl'; did you mean 'local'?" in line


def test_dead_server_is_a_one_line_provider_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    line = assert_one_line_error(
        hushchat("providers", "probe", "local", "--prompt", "hi", config=config), 3
    )
    assert line.startswith("hushchat: local: ")
    line = assert_one_line_error(hushchat("providers", "models", "local", config=config), 3)
    assert line.startswith("hushchat: local: ")


def test_api_key_never_printed_on_errors(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"http://127.0.0.1:{free_port()}/v1", "    api_key: ${MY_KEY}\n"
    )
    result = hushchat(
        "--debug", "providers", "probe", "local", "--prompt", "hi",
        config=config, env={"MY_KEY": "sk-secret-value-123"},
    )  # fmt: skip
    assert result.returncode == 3
    assert "sk-secret-value-123" not in result.stdout + result.stderr


@pytest.mark.llama_server
def test_probe_streams_from_real_llama_server(tmp_path: Path, llama_server: LlamaServer) -> None:
    config = write_config(tmp_path, f"{llama_server.base_url}/v1")
    result = hushchat(
        "providers", "probe", "local", "--prompt", "Say hello", "--max-tokens", "12",
        config=config,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "no text streamed"
    assert result.stdout.isprintable() or "\n" in result.stdout
    assert "time to first token" in result.stderr
    assert "tokens/s" in result.stderr
    assert "finish: length" in result.stderr


@pytest.mark.llama_server
def test_models_from_real_llama_server(tmp_path: Path, llama_server: LlamaServer) -> None:
    config = write_config(tmp_path, f"{llama_server.base_url}/v1")
    result = hushchat("providers", "models", "local", config=config)
    assert result.returncode == 0, result.stderr
    assert MODEL_ALIAS in result.stdout.split()


@pytest.mark.llama_server
def test_context_too_long_is_exit_3(tmp_path: Path, llama_server: LlamaServer) -> None:
    config = write_config(tmp_path, f"{llama_server.base_url}/v1")
    result = hushchat(
        "providers", "probe", "local", "--prompt", "hello world " * 600, config=config
    )
    line = assert_one_line_error(result, 3)
    assert "context" in line.lower()
