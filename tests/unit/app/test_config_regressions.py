"""Inputs the fuzzer (tests/fuzz/test_config.py) found to crash or hang the config loader.

Each must load or raise ``ConfigError`` whose every line is ``file:line: problem``.
"""

from __future__ import annotations

import re
import time

import pytest

from app.config import parse_config
from app.errors import ConfigError

TYPES = ["anthropic", "ollama", "openai"]
LOCATED = re.compile(r"^cfg\.yml:\d+: \S")


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yml", env or {}, lambda: TYPES)
    lines = str(caught.value).splitlines()
    assert lines and all(LOCATED.match(line) for line in lines), lines
    return lines


def entry(**fields: str) -> str:
    values = {
        "provider_name": "p",
        "type": "openai",
        "base_url": "http://127.0.0.1:1/v1",
        "model_name": "m",
        **fields,
    }
    return "llms:\n  - {" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}\n"


def test_a_control_character_is_a_yaml_error_on_its_line() -> None:
    # ruamel's ReaderError is not a MarkedYAMLError: it escaped as itself.
    assert problems("ui:\n  theme: dark\x01\n") == [
        "cfg.yml:2: not valid YAML: the control character U+0001 is not allowed"
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ui:\n  font_size: !!int 0x\n", 2),  # IndexError in ruamel
        ("ui:\n  font_size: !!float .\n", 2),  # ValueError
        ("ui:\n  theme: !!bool maybe\n", 2),  # KeyError
        ("ui: !!set dark\n", 1),  # AttributeError
        ("ui:\n  theme: !!omap x\n", 2),  # AttributeError
        ("ui:\n  theme: !!timestamp 2001-02-30\n", 2),  # ValueError
        ("? [[a]]\n: 1\n", 1),  # TypeError, after the mapping was built
    ],
)
def test_malformed_tagged_values_are_yaml_errors(text: str, line: int) -> None:
    (problem,) = problems(text)
    assert problem.startswith(f"cfg.yml:{line}: not valid YAML: ")


def test_deep_nesting_is_a_yaml_error_not_a_recursion_error() -> None:
    assert problems("ui: " + "[" * 5000) == [
        "cfg.yml:1: not valid YAML: nested more than 64 levels deep"
    ]


def test_keys_without_their_own_position_still_get_a_line() -> None:
    # An !!omap has no line data, and a key merged in with "<<:" has none of its own:
    # _line_of raised TypeError and KeyError.
    assert problems("ui: !!omap [bogus: 1]\n")[0].startswith("cfg.yml:1: ui.bogus: unknown")
    merged = problems("base: &base {bogus: 1}\nui:\n  <<: *base\n")
    assert "cfg.yml:2: ui.bogus: unknown setting" in merged[0]


def test_a_value_with_a_surrogate_or_a_newline_is_quoted_in_one_line() -> None:
    # The message was built with '{value}': a lone surrogate made pydantic fail to encode
    # it (UnicodeEncodeError), and a newline split the message into unlocated lines.
    (surrogate,) = problems(entry(base_url="'${URL}'"), {"URL": "\udcff"})
    assert surrogate == ("cfg.yml:2: llms[0].base_url: '\\udcff' is not an http:// or https:// URL")
    (newline,) = problems(entry(base_url='"a\\nb"'))
    assert newline == "cfg.yml:2: llms[0].base_url: 'a\\nb' is not an http:// or https:// URL"
    (kind,) = problems(entry(type='"x\\ny"'))
    assert kind.startswith("cfg.yml:2: llms[0].type: 'x\\ny' is not a provider type")


def test_odd_key_names_are_quoted_in_one_line() -> None:
    assert problems('"a\\nb": 1\n') == [
        "cfg.yml:1: 'a\\nb': unknown setting; allowed here: default_llm, title_llm, llms, "
        "logging, ui, updates, attachments, default_tts, tts"
    ]
    assert problems('" ": 1\n')[0].startswith("cfg.yml:1: ' ': unknown setting")


def test_nested_aliases_are_refused_quickly() -> None:
    # "Billion laughs": ten aliases of ten aliases ... 410 bytes took minutes to expand.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines.append("ui: {theme: *a8}")
    started = time.perf_counter()
    (problem,) = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 5
    assert "more than 10,000 values once its aliases (*name) are expanded" in problem
