"""Provider presets: the servers the add-provider form offers by name (data, no Qt).

Each preset pre-fills the form's type, base URL and locality; the model is picked from
the list the server reports (``provider_setup.test_connection``) once the key, if one
is needed, is typed. Cloud presets are never on-prem (a test holds every cloud preset to
that and every preset to the ``llms:`` schema); local ones listen on the server's
default loopback port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["PRESETS", "ProviderPreset", "preset_named"]


@dataclass(frozen=True)
class ProviderPreset:
    """A known provider: what the form fills in when it is chosen."""

    label: str  # shown in the form
    provider_name: str  # suggested ``provider_name``
    type: str  # openai, anthropic or ollama
    base_url: str
    locality: str  # on_prem, free_cloud or paid_cloud
    needs_key: bool
    key_url: str = ""  # where the service hands out API keys

    @property
    def is_local(self) -> bool:
        """Whether the server runs on this computer (an on-prem preset)."""
        return self.locality == "on_prem"

    def entry(self, model_name: str = "") -> dict[str, Any]:
        """The ``llms:`` item this preset fills in (``model_name`` as chosen)."""
        data: dict[str, Any] = {
            "provider_name": self.provider_name,
            "type": self.type,
            "base_url": self.base_url,
            "locality": self.locality,
        }
        if model_name:
            data["model_name"] = model_name
        return data


PRESETS: Final[tuple[ProviderPreset, ...]] = (
    # Cloud services (an API key is needed).
    ProviderPreset("OpenAI", "openai", "openai", "https://api.openai.com/v1", "paid_cloud",
                   True, "https://platform.openai.com/api-keys"),
    ProviderPreset("Anthropic", "anthropic", "anthropic", "https://api.anthropic.com",
                   "paid_cloud", True, "https://console.anthropic.com/settings/keys"),
    ProviderPreset("OpenRouter", "openrouter", "openai", "https://openrouter.ai/api/v1",
                   "paid_cloud", True, "https://openrouter.ai/keys"),
    ProviderPreset("Groq", "groq", "openai", "https://api.groq.com/openai/v1", "paid_cloud",
                   True, "https://console.groq.com/keys"),
    ProviderPreset("Mistral", "mistral", "openai", "https://api.mistral.ai/v1", "paid_cloud",
                   True, "https://console.mistral.ai/api-keys"),
    ProviderPreset("DeepSeek", "deepseek", "openai", "https://api.deepseek.com/v1",
                   "paid_cloud", True, "https://platform.deepseek.com/api_keys"),
    ProviderPreset("Together", "together", "openai", "https://api.together.xyz/v1",
                   "paid_cloud", True, "https://api.together.ai/settings/api-keys"),
    ProviderPreset("Google Gemini (OpenAI-compatible)", "gemini", "openai",
                   "https://generativelanguage.googleapis.com/v1beta/openai", "paid_cloud",
                   True, "https://aistudio.google.com/apikey"),
    # Servers on this computer, at their default ports.
    ProviderPreset("Ollama", "ollama", "ollama", "http://127.0.0.1:11434", "on_prem", False),
    ProviderPreset("llama.cpp server", "llama-cpp", "openai", "http://127.0.0.1:8080/v1",
                   "on_prem", False),
    ProviderPreset("LM Studio", "lm-studio", "openai", "http://127.0.0.1:1234/v1", "on_prem",
                   False),
    ProviderPreset("vLLM", "vllm", "openai", "http://127.0.0.1:8000/v1", "on_prem", False),
    ProviderPreset("LocalAI", "localai", "openai", "http://127.0.0.1:8080/v1", "on_prem",
                   False),
    ProviderPreset("Jan", "jan", "openai", "http://127.0.0.1:1337/v1", "on_prem", False),
)  # fmt: skip


def preset_named(provider_name: str) -> ProviderPreset:
    """The preset whose suggested ``provider_name`` is ``provider_name`` (KeyError if none)."""
    for preset in PRESETS:
        if preset.provider_name == provider_name:
            return preset
    raise KeyError(provider_name)
