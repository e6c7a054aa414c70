"""Fuzzing the ``.config.yml`` loader (``app.config.parse_config`` / ``load_config``).

Whatever the text, the loader returns a ``Config`` or raises ``ConfigError`` whose every
line names the file and a line number; never another exception. ``${VAR}`` substitution
is one pass: a hostile environment value is used as it is, never expanded again.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from app.config import Config, LoadedConfig, load_config, parse_config, render_example
from app.errors import ConfigError
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import AWKWARD_TEXT, mutated, mutated_bytes

pytestmark = [
    pytest.mark.fuzz,
    # Reused anchors and YAML 1.1 floats make ruamel warn on stderr; the file still loads.
    pytest.mark.filterwarnings("ignore::ruamel.yaml.error.YAMLWarning"),
    pytest.mark.filterwarnings("ignore::ruamel.yaml.error.YAMLFutureWarning"),
]

SOURCE = "fuzz.yml"
TYPES = ["anthropic", "ollama", "openai"]
EXAMPLE = render_example()
EXAMPLE_DATA: dict[str, Any] = YAML(typ="safe").load(EXAMPLE)
CONFIG_KEYS = sorted(
    {
        *EXAMPLE_DATA,
        *EXAMPLE_DATA["llms"][0],
        *EXAMPLE_DATA["logging"],
        *EXAMPLE_DATA["ui"],
        "on_prem",
        "free_cloud",
        "paid_cloud",
        "keychain",
        "${API_KEY}",
        "http://127.0.0.1:1",
        "https://example.org/v1",
    }
)
#: Pieces of YAML syntax, glued together at random: anchors, aliases, merge keys, tags,
#: complex keys, flow collections, directives, several documents, odd indentation.
YAML_PIECES = [
    "\n", "  ", "    ", "\t", "- ", ": ", "? ", "&a ", "*a", "&b ", "*b", "<<: ", "<<: *a",
    "!!str ", "!!int ", "!!float ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ",
    "!!python/object:os.system ", "!custom ", "!<tag:yaml.org,2002:str> ", "{", "}", "[",
    "]", ", ", "'", '"', "|", ">", "#", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n",
    "...\n", "~", "null", "true", "0x1F", "0o17", "1e400", ".nan", "-.inf", "2001-12-14",
    "${X}", "${X:-d}", "$$", "\\", "\x85", "\u2028", "\ufeff", "\x00", "\x7f",
    *CONFIG_KEYS,
]  # fmt: skip
_LOCATED = re.compile(rf"^{re.escape(SOURCE)}:\d+: \S")


def _parse(text: str, env: dict[str, str] | None = None) -> Config | None:
    """Parse; None for a ConfigError whose every line says file:line; anything else fails."""
    try:
        return parse_config(text, SOURCE, env or {}, lambda: TYPES)
    except ConfigError as error:
        _check_located(str(error))
        return None


def _check_located(message: str) -> None:
    lines = message.splitlines()
    assert lines, "an empty ConfigError"
    for line in lines:
        assert _LOCATED.match(line), f"not 'file:line: problem': {line!r}"


def _dump(data: Any, style: str) -> str:
    if style == "json":  # JSON is YAML: a second, flow-style rendering of the same data
        return json.dumps(data, indent=2)
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


@FUZZ
@given(
    st.one_of(st.text(), st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=4)).map("".join))
)
def test_any_text_loads_or_is_a_located_config_error(text: str) -> None:
    tried("config: YAML text")
    _parse(text)


@FUZZ
@given(
    mutated(EXAMPLE_DATA, CONFIG_KEYS),
    st.sampled_from(["json", "block"]),
    st.lists(st.sampled_from(YAML_PIECES), max_size=3),
    st.integers(0, 10_000),
)
def test_mutated_config_loads_or_is_a_located_config_error(
    data: Any, style: str, pieces: list[str], where: int
) -> None:
    tried("config: mutated valid config")
    text = _dump(data, style)
    position = where % (len(text) + 1)
    _parse(text[:position] + "".join(pieces) + text[position:])


_TEMPLATES = st.sampled_from(
    ["${V}", "x-${V}-y", "${V:-}", "${V:-fallback}", "$${V}", "${V}${W}", "${W:-${V}}", "$$$$"]
)


def _expected(template: str, env: dict[str, str]) -> str | None:
    """What one-pass substitution makes of ``template``; None where a variable is unset."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        missing = True
        return ""

    result = re.sub(r"\$\$|\$\{(V|W)(?::-([^}]*))?\}", replace, template)
    return None if missing else result


@FUZZ
@given(
    template=_TEMPLATES,
    field=st.sampled_from(["model_name", "api_key", "base_url", "template"]),
    env=st.dictionaries(
        st.sampled_from(["V", "W"]),
        st.one_of(
            AWKWARD_TEXT,
            st.text().filter(lambda value: "\x00" not in value),
            st.sampled_from(["${V}", "${W}", "$${V}", "${V:-x}", "}", "${", "keychain"]),
        ),
    ),
)
def test_environment_values_are_substituted_once(
    template: str, field: str, env: dict[str, str]
) -> None:
    tried("config: ${VAR} substitution")
    entry = {
        "provider_name": "p",
        "type": "openai",
        "base_url": "http://127.0.0.1:8080/v1",
        "model_name": "m",
        "locality": "paid_cloud",
    }
    entry[field] = template
    text = f"llms:\n  - {json.dumps(entry)}\n"
    config = _parse(text, env)
    expected = _expected(template, env)
    if config is None or field == "base_url":  # base_url is normalised (trailing "/")
        return
    assert expected is not None, "an unset variable without a default was accepted"
    assert getattr(config.llms[0], field) == expected


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("config")


@FUZZ
@given(
    st.one_of(
        st.binary(),
        mutated_bytes(EXAMPLE.encode()),
        st.text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    )
)
def test_config_file_bytes_load_or_are_a_config_error(config_dir: Path, data: bytes) -> None:
    tried("config: file bytes")
    path = config_dir / "config.yml"
    path.write_bytes(data)
    try:
        loaded = load_config(path, env={})
    except ConfigError as error:
        assert str(error).startswith(str(path)), str(error)
    else:
        assert isinstance(loaded, LoadedConfig)
