"""Hushchat's LLM provider layer: async streaming chat over the wire formats of
OpenAI-compatible servers, Ollama and Anthropic, plus raw-prompt template mode.

This package imports nothing from ``app`` or ``sync_server`` so that it can be
split into its own distribution. Its public API is exactly ``__all__``; it
follows semantic versioning (``__version__``), documented in ``docs/providers.md``.
"""

from providers.base import Provider
from providers.errors import (
    AuthError,
    ConnectionFailedError,
    ContextTooLongError,
    PromptTemplateError,
    ProtocolError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    UnknownProviderTypeError,
)
from providers.registry import create_provider, provider_types
from providers.spec import Locality, ProviderSpec, default_locality, is_local_url
from providers.types import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    FinishEvent,
    ModelInfo,
    ReasoningDelta,
    Role,
    TextDelta,
    Usage,
    UsageEvent,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ChatEvent",
    "ChatMessage",
    "ChatRequest",
    "ConnectionFailedError",
    "ContextTooLongError",
    "FinishEvent",
    "Locality",
    "ModelInfo",
    "PromptTemplateError",
    "ProtocolError",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "ProviderSpec",
    "ProviderTimeoutError",
    "RateLimitedError",
    "ReasoningDelta",
    "Role",
    "ServerError",
    "TextDelta",
    "UnknownProviderTypeError",
    "Usage",
    "UsageEvent",
    "__version__",
    "create_provider",
    "default_locality",
    "is_local_url",
    "provider_types",
]
