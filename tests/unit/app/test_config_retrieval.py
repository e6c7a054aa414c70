"""Config for retrieval over attachments: ``embedding_model`` on an entry and the
``attachments:`` section (defaults, validation messages)."""

from __future__ import annotations

import pytest

from app.config import Config, parse_config
from app.errors import ConfigError

TYPES = ["anthropic", "ollama", "openai"]

ENTRY = """
llms:
  - provider_name: local
    type: ollama
    base_url: http://127.0.0.1:11434
    model_name: llama3.2
"""


def parse(text: str) -> Config:
    return parse_config(text, "cfg.yml", {}, lambda: TYPES)


def test_defaults() -> None:
    config = parse(ENTRY)
    assert config.llm().embedding_model is None
    assert config.attachments.max_size_mb == 50
    assert config.attachments.inline_max_chars == 12000
    assert config.attachments.retrieval_chunks == 6


def test_values_are_read() -> None:
    config = parse(
        ENTRY
        + "    embedding_model: nomic-embed-text\n"
        + "attachments:\n  max_size_mb: 10\n  inline_max_chars: 0\n  retrieval_chunks: 3\n"
    )
    assert config.llm().embedding_model == "nomic-embed-text"
    assert config.attachments.model_dump() == {
        "max_size_mb": 10,
        "inline_max_chars": 0,
        "retrieval_chunks": 3,
    }


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("attachments:\n  max_size_mb: 0\n", "attachments.max_size_mb"),
        ("attachments:\n  retrieval_chunks: 0\n", "attachments.retrieval_chunks"),
        ("attachments:\n  inline_max_chars: -1\n", "attachments.inline_max_chars"),
        ("attachments:\n  chunks: 3\n", "attachments.chunks"),
    ],
)
def test_bad_values_name_the_field(section: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse(ENTRY + section)


def test_empty_embedding_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="embedding_model"):
        parse(ENTRY + '    embedding_model: ""\n')
