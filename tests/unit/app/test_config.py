"""The .config.yml schema: loading, substitution, error messages, the example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    CONFIG_ENV,
    Config,
    find_config,
    load_config,
    parse_config,
    render_example,
)
from app.errors import ConfigError, ExitCode
from providers import Locality

ROOT = Path(__file__).resolve().parents[3]
TYPES = ["anthropic", "ollama", "openai"]


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, "cfg.yml", env or {}, lambda: TYPES)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    assert caught.value.exit_code == ExitCode.USAGE
    return str(caught.value).splitlines()


def test_original_app_keys_are_accepted() -> None:
    config = parse(
        """
default_llm: local
llms:
  - provider_name: local
    type: openai
    base_url: http://127.0.0.1:8080/v1/
    model_name: tiny
    context_size: 512
    template: "{{ prompt }}"
"""
    )
    entry = config.llm()
    assert entry.provider_name == "local"
    assert entry.base_url == "http://127.0.0.1:8080/v1"  # trailing slash dropped
    assert entry.effective_locality is Locality.ON_PREM
    spec = entry.to_spec()
    assert spec.model == "tiny" and spec.context_size == 512 and spec.template == "{{ prompt }}"


def test_empty_file_means_defaults() -> None:
    assert parse("") == Config()
    assert parse("# only a comment\n") == Config()


def test_unknown_type_names_line_field_and_suggestion() -> None:
    text = """llms:
  - provider_name: a
    type: openai
    base_url: http://localhost:1/v1
    model_name: m
  - provider_name: b
    type: olama
    base_url: http://localhost:2
    model_name: m
"""
    assert problems(text) == [
        "cfg.yml:7: llms[1].type: 'olama' is not a provider type; did you mean 'ollama'?; "
        "known: anthropic, ollama, openai"
    ]


def test_unknown_key_is_an_error_with_suggestion() -> None:
    text = "llms:\n  - provider_name: a\n    type: openai\n    base_url: http://127.0.0.1/v1\n"
    text += "    model_name: m\n    contxt_size: 10\n"
    (line,) = problems(text)
    assert line.startswith("cfg.yml:6: llms[0].contxt_size: unknown setting; did you mean ")
    assert "'context_size'" in line
    (top,) = problems("llm:\n  - x\n")
    assert top.startswith("cfg.yml:1: llm: unknown setting; did you mean 'llms'?")


def test_remote_url_needs_declared_locality() -> None:
    text = "llms:\n  - provider_name: o\n    type: openai\n"
    text += "    base_url: https://api.openai.com/v1\n    model_name: m\n"
    (line,) = problems(text)
    assert line.startswith("cfg.yml:4: llms[0].locality: required because")
    config = parse(text + "    locality: paid_cloud\n")
    assert config.llms[0].effective_locality is Locality.PAID_CLOUD


@pytest.mark.parametrize(
    ("url", "locality"),
    [
        ("http://localhost:11434", Locality.ON_PREM),
        ("http://192.168.1.20:8080/v1", Locality.ON_PREM),
        ("http://10.0.0.5/v1", Locality.ON_PREM),
        ("http://[::1]:8080/v1", Locality.ON_PREM),
        ("http://gpu-box.local:8000/v1", Locality.ON_PREM),
    ],
)
def test_local_urls_default_to_on_prem(url: str, locality: Locality) -> None:
    text = f"llms:\n  - {{provider_name: a, type: openai, base_url: '{url}', model_name: m}}\n"
    assert parse(text).llms[0].effective_locality is locality


def test_bad_values_are_explained() -> None:
    text = """llms:
  - provider_name: a
    type: openai
    base_url: ftp://example
    model_name: m
    context_size: -5
    locality: moon
"""
    lines = problems(text)
    assert "cfg.yml:4: llms[0].base_url: 'ftp://example' is not an http:// or https:// URL" in lines
    assert any(line.startswith("cfg.yml:6: llms[0].context_size:") for line in lines)
    assert any(
        line.startswith("cfg.yml:7: llms[0].locality: 'moon' is not allowed; use one of")
        for line in lines
    )


def test_missing_required_field() -> None:
    (line,) = problems("llms:\n  - provider_name: a\n    type: openai\n    model_name: m\n")
    assert line == "cfg.yml:2: llms[0].base_url: required, but missing"


def test_env_substitution_with_defaults() -> None:
    text = """llms:
  - provider_name: remote
    type: openai
    base_url: ${BASE:-http://127.0.0.1:9999/v1}
    model_name: ${MODEL}
    api_key: ${KEY}
    template: "cost $$5"
"""
    config = parse(text, {"MODEL": "big", "KEY": "sk-test-123456"})
    entry = config.llms[0]
    assert entry.base_url == "http://127.0.0.1:9999/v1"
    assert entry.model_name == "big"
    assert entry.api_key == "sk-test-123456"
    assert entry.template == "cost $5"
    (line,) = problems(text, {"KEY": "x"})
    assert line == (
        "cfg.yml:5: llms[0].model_name: environment variable MODEL is not set "
        "(set it, or write ${MODEL:-default})"
    )


def test_literal_api_key_is_refused_without_echoing_it() -> None:
    text = "llms:\n  - provider_name: a\n    type: openai\n    base_url: http://127.0.0.1/v1\n"
    text += "    model_name: m\n    api_key: sk-live-SECRET\n"
    (line,) = problems(text)
    assert line.startswith("cfg.yml:6: llms[0].api_key: write a reference, not the key itself")
    assert "SECRET" not in line


def test_duplicate_names_and_bad_default() -> None:
    text = """default_llm: locl
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1/v1', model_name: m}
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1/v1', model_name: m}
"""
    lines = problems(text)
    assert "cfg.yml:4: llms[1].provider_name: 'local' is used twice; names must be unique" in lines
    assert (
        "cfg.yml:1: default_llm: 'locl' is not the provider_name of any llms entry; "
        "did you mean 'local'?" in lines
    )


def test_template_with_anthropic_is_refused() -> None:
    text = "llms:\n  - provider_name: a\n    type: anthropic\n    base_url: http://127.0.0.1\n"
    text += "    model_name: m\n    template: '{{ prompt }}'\n"
    (line,) = problems(text)
    assert line.startswith("cfg.yml:6: llms[0].template: template mode needs type openai")


def test_invalid_yaml_names_the_line() -> None:
    (line,) = problems("llms:\n  - provider_name: a\n   type: [unclosed\n")
    assert line.startswith("cfg.yml:")
    assert "not valid YAML" in line
    (line,) = problems("- just\n- a list\n")
    assert line == "cfg.yml:1: the config must be a mapping of settings at the top level"


def test_unknown_provider_name_suggests() -> None:
    config = parse("llms:\n  - {provider_name: ollama, type: ollama, "
                   "base_url: 'http://127.0.0.1:11434', model_name: m}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="no provider named 'olama'; did you mean 'ollama'"):
        config.llm("olama")
    with pytest.raises(ConfigError, match="no LLM providers are configured"):
        Config().llm()


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit.yml"
    from_env = tmp_path / "env.yml"
    explicit.write_text("")
    from_env.write_text("")
    assert find_config(explicit, {CONFIG_ENV: str(from_env)}) == explicit
    assert find_config(None, {CONFIG_ENV: str(from_env)}) == from_env
    with pytest.raises(ConfigError, match=r"config file not found \(named by --config\)"):
        find_config(tmp_path / "nope.yml", {})
    with pytest.raises(ConfigError, match=f"named by {CONFIG_ENV}"):
        find_config(None, {CONFIG_ENV: str(tmp_path / "nope.yml")})
    # No explicit file and no platform file: defaults, not a crash.
    monkeypatch.setattr("app.config.default_config_path", lambda: tmp_path / "absent.yml")
    loaded = load_config(None, {})
    assert loaded.path is None and loaded.config == Config()


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b"llms: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(path, {})


def test_example_file_is_in_step_with_the_schema() -> None:
    committed = (ROOT / ".config.yml.example").read_text(encoding="utf-8")
    assert committed == render_example(), (
        "run `hushchat config example > .config.yml.example` to regenerate it"
    )
    # It validates (with the environment variable it references set) ...
    config = parse(committed, {"OPENAI_API_KEY": "sk-example-key"})
    assert len(config.llms) >= 2
    # ... and documents every field of every model.
    assert {entry.type for entry in config.tts} == {"system", "openai", "xtts"}
    for model in (Config, type(config.llms[0]), type(config.logging), type(config.tts[0])):
        for name, field in model.model_fields.items():
            assert f"{name}:" in committed, f"{name} missing from .config.yml.example"
            assert field.description, f"{model.__name__}.{name} has no description"
