"""Provider presets are valid ``llms:`` entries, cloud ones never on-prem; failed
connection tests read as one sentence naming the URL, without internal names."""

from __future__ import annotations

import httpx
import pytest

from app.config import LLMEntry
from app.provider_presets import PRESETS, preset_named
from app.provider_setup import DEFAULT_LOCAL_SERVERS, connection_problem
from providers import (
    AuthError,
    ConnectionFailedError,
    ProviderConfigError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
)
from providers.http_errors import ErrorContext, from_transport_error

ISSUE_12_PRESETS = {
    "OpenAI", "Anthropic", "OpenRouter", "Groq", "Mistral", "DeepSeek", "Together",
    "Google Gemini", "Ollama", "llama.cpp", "LM Studio", "vLLM", "LocalAI", "Jan",
}  # fmt: skip


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.provider_name)
def test_every_preset_is_a_valid_entry(preset: object) -> None:
    from app.provider_presets import ProviderPreset

    assert isinstance(preset, ProviderPreset)
    entry = LLMEntry.model_validate(preset.entry("some-model"))
    assert entry.type in ("openai", "anthropic", "ollama")
    assert entry.effective_locality.value == preset.locality
    if preset.is_local:
        assert entry.base_url.startswith("http://127.0.0.1:")
        assert not preset.needs_key
    else:
        # A cloud service is never marked on-prem, needs a key and is reached over TLS.
        assert entry.effective_locality.value != "on_prem"
        assert entry.base_url.startswith("https://")
        assert preset.needs_key and preset.key_url.startswith("https://")


def test_the_presets_the_issue_asks_for_are_all_there_once() -> None:
    labels = [preset.label for preset in PRESETS]
    for wanted in ISSUE_12_PRESETS:
        assert sum(label.startswith(wanted) for label in labels) == 1, wanted
    names = [preset.provider_name for preset in PRESETS]
    assert len(set(names)) == len(names)
    assert preset_named("gemini").base_url.endswith("/openai")  # the OpenAI-compatible endpoint
    assert [s.provider_name for s in DEFAULT_LOCAL_SERVERS] == ["ollama", "llama-cpp", "lm-studio"]


URL = "http://127.0.0.1:9/v1"


def _context() -> ErrorContext:
    return ErrorContext(
        provider="test", server="OpenAI-compatible server", base_url=URL, timeout=10.0,
        has_api_key=False, redact=lambda text: text,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (from_transport_error(httpx.ConnectError("refused"), _context()), "Nothing answered at"),
        (ProviderTimeoutError("slow", provider="test"), "did not answer in time"),
        (AuthError("bad key `api_key`", provider="test", status=401), "did not accept the API key"),
        (RateLimitedError("slow down", provider="test"), "limiting requests"),
        (ServerError("no `base_url`", provider="test", status=404), "has no model list there"),
        (ServerError("boom", provider="test", status=500), "HTTP 500"),
        (ProviderConfigError("`base_url` bad", provider="test"), "not a usable address"),
        (ConnectionFailedError("could not resolve the host 'x'", provider="test"), "not found"),
    ],
)
def test_a_failed_test_is_one_sentence_naming_the_url(error: Exception, says: str) -> None:
    text = connection_problem(error, URL + "/")
    assert says in text
    assert URL in text
    assert "`" not in text and "test:" not in text and "Could not connect:" not in text
    assert text.endswith(".") and ". " not in text.rstrip(".")
