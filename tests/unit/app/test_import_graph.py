"""What start-up imports: the unlock page, ``--help`` and ``--version`` stay light (DESIGN §8).

The window test starts the real ``hushchat`` command in a fresh interpreter (Qt offscreen,
an initialised profile, ``-X importtime``) and reads which modules were imported before its
``--debug`` line "window shown on the unlock page"; the import-time lines and the log
lines share the child's stderr, in the order they happened. The test process itself
imports no Qt.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.config import (
    BUILTIN_PROVIDER_TYPES,
    PROVIDER_ENTRY_POINT_GROUP,
    installed_provider_types,
    parse_config,
)
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SHOWN_LINE = "window shown on the unlock page"
_IMPORT_TIME = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")

#: Never imported before the unlock page is shown: what renders chats, the providers'
#: HTTP stack, the security-key and keychain libraries, the pages not shown yet, the
#: subcommands' modules, and the config, the session, the services and the vault's
#: cryptography (they load after the first frame).
NOT_ON_THE_UNLOCK_PATH = (
    "markdown_it",
    "pygments",
    "jinja2",
    "httpx",
    "httpx_sse",
    "httpcore",
    "anyio",
    "h11",
    "providers.base",
    "providers.registry",
    "providers.openai",
    "providers.ollama",
    "providers.anthropic",
    "providers.template",
    "fido2",
    "keyring",
    "app.ui.chat_area",
    "app.ui.chat_view",
    "app.ui.markdown",
    "app.ui.first_run",
    "app.ui.settings",
    "app.ui.voice",  # the speaker is made when reading aloud is first asked for
    "app.speech",
    "PySide6.QtTextToSpeech",
    "PySide6.QtMultimedia",
    "app.chat",
    "app.store",
    "app.vault.cli",
    "app.vault.security_key",
    "app.config",
    "app.session",
    "app.vault.vault",
    "ruamel",
    "pydantic",
    "providers",
    "sqlcipher3",
    "argon2",
    "cryptography",
)

#: Not imported by ``hushchat --help`` / ``--version``: the subcommands and what they use.
NOT_FOR_HELP = (
    "app.chat",
    "app.store",
    "app.vault",
    "app.session",
    "PySide6",
    "httpx",
    "jinja2",
    "keyring",
    "fido2",
    "sqlcipher3",
    "argon2",
)


def _child_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    env.update(
        {
            "QT_QPA_PLATFORM": "offscreen",
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    return env


def _hushchat_imports(args: list[str], env: dict[str, str], until: str | None) -> set[str]:
    """Modules the ``hushchat`` command imports, up to the stderr line containing ``until``."""
    code = "import sys\nfrom app.cli import main\nsys.exit(main())\n"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules: set[str] = set()
    for line in result.stderr.splitlines():
        if until is not None and until in line:
            return modules
        match = _IMPORT_TIME.match(line)
        if match:
            modules.add(match.group(1))
    assert until is None, f"no line {until!r} in the output:\n{result.stderr[-3000:]}"
    return modules


def _present(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in modules if any(name == p or name.startswith(p + ".") for p in packages)
    )


@pytest.mark.skipif(importlib.util.find_spec("PySide6") is None, reason="PySide6 not installed")
def test_unlock_page_is_shown_before_the_heavy_modules_are_imported(tmp_path: Path) -> None:
    from app.vault.kdf import FLOOR_PARAMS
    from app.vault.vault import Vault

    profile = tmp_path / "profile"
    vault, _code = Vault.create(profile, "import graph passphrase", kdf=FLOOR_PARAMS)
    vault.close()
    config = tmp_path / "config.yml"
    config.write_text(
        "llms:\n  - provider_name: local\n    type: openai\n"
        "    base_url: http://127.0.0.1:9/v1\n    model_name: m\n",
        encoding="utf-8",
    )
    env = _child_env(tmp_path) | {"HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS": "0"}
    args = ["--debug", "--config", str(config), "--profile", str(profile)]

    before_shown = _hushchat_imports(args, env, until=SHOWN_LINE)

    assert "PySide6.QtWidgets" in before_shown  # the window was started for real
    assert _present(before_shown, NOT_ON_THE_UNLOCK_PATH) == []


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_import_no_subcommand(option: str, tmp_path: Path) -> None:
    modules = _hushchat_imports([option], _child_env(tmp_path), until=None)
    assert "app.cli" in modules
    assert _present(modules, NOT_FOR_HELP) == []
    if option == "--version":  # --help prints the config path, which the schema module knows
        assert _present(modules, ("app.config", "pydantic", "providers")) == []


def test_the_command_table_matches_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """The first pass lists the commands and help lines the registrars add, one each."""
    top_level_help = cli.build_parser().format_help()
    assert cli.build_parser(()).format_help() == top_level_help
    for name in cli.COMMANDS:
        parser = cli.build_parser((name,))
        assert parser.format_help() == top_level_help
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([name, "--help"])  # the real parser of the command
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: hushchat {name} ")


def test_a_subcommand_is_parsed_by_its_own_parser() -> None:
    args = cli.parse_args(["--debug", "config", "path"])
    assert args.debug and args.handler.__name__ == "_config_path"
    assert cli.parse_args([]).__dict__.keys().isdisjoint({"handler", "stand_in"})


# --- provider types: checked by name, the provider layer not imported ----------------------


def test_the_builtin_provider_types_are_the_registrys() -> None:
    from providers import registry

    assert sorted(BUILTIN_PROVIDER_TYPES) == sorted(registry._BUILTIN_TYPES)
    assert PROVIDER_ENTRY_POINT_GROUP == registry.ENTRY_POINT_GROUP


def _one_entry(provider_type: str) -> str:
    return (
        f"llms:\n  - {{provider_name: a, type: {provider_type}, base_url: http://127.0.0.1:1,"
        " model_name: m}\n"
    )


def test_checking_a_config_imports_no_provider_module() -> None:
    code = (
        "import json, sys\n"
        "from app.config import parse_config\n"
        f"parse_config({_one_entry('ollama')!r}, 'cfg.yml', {{}})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    provider_modules = {name for name in loaded if name.startswith("providers.")}
    # providers.vision is names and patterns only (the image check of the package API).
    light = {"providers.errors", "providers.spec", "providers.types", "providers.vision"}
    assert provider_modules <= light
    assert _present(loaded, ("httpx", "jinja2")) == []


def test_a_plugin_type_is_known_by_its_entry_point_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    plugin = metadata.EntryPoint("echo", "hushchat_echo_plugin:Echo", PROVIDER_ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [plugin] if group else [])
    assert installed_provider_types() == ["anthropic", "echo", "ollama", "openai"]
    text = _one_entry("echo")
    config = parse_config(text, "cfg.yml", {})
    assert config.llms[0].type == "echo"
    assert "hushchat_echo_plugin" not in sys.modules  # named, not imported

    text = text.replace("type: echo", "type: ecko")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yml", {})
    assert str(caught.value) == (
        "cfg.yml:2: llms[0].type: 'ecko' is not a provider type; did you mean 'echo'?; "
        "known: anthropic, echo, ollama, openai"
    )


def test_builtin_types_need_no_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    def refuse(group: str) -> list[metadata.EntryPoint]:
        raise AssertionError("read the package metadata for a built-in type")

    monkeypatch.setattr(metadata, "entry_points", refuse)
    assert parse_config(_one_entry("openai"), "cfg.yml", {}).llms[0].type == "openai"


def test_the_profile_names_the_slot_file_as_the_vault_does() -> None:
    from app.vault import profile, slots

    assert profile.SLOT_FILE_NAME == slots.SLOT_FILE_NAME
