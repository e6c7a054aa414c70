"""Hushchat's LLM provider layer: async streaming chat over the wire formats of
OpenAI-compatible servers, Ollama and Anthropic, plus raw-prompt template mode.

This package imports nothing from ``app`` or ``sync_server``: it is also built as its
own distribution, ``hushchat-providers`` (``packaging/providers/``). Its public API is
exactly ``__all__``; it follows semantic versioning (``__version__``), documented in
``docs/providers.md``.

The names that need the HTTP stack (``Provider``, ``create_provider``,
``provider_types``) are loaded on first use, so that importing the package for its
types (the desktop app's config does) does not pay for httpx and Jinja at start-up.
"""

import typing as _typing

from providers.errors import (
    AuthError,
    ConnectionFailedError,
    ContextTooLongError,
    ImagesNotSupportedError,
    PromptTemplateError,
    ProtocolError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    UnknownProviderTypeError,
)
from providers.spec import Locality, ProviderSpec, default_locality, is_local_url
from providers.types import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    FinishEvent,
    ImageInput,
    ModelInfo,
    ReasoningDelta,
    Role,
    TextDelta,
    Usage,
    UsageEvent,
)
from providers.vision import accepts_images, require_images_accepted

if _typing.TYPE_CHECKING:
    from providers.base import Provider
    from providers.registry import create_provider, provider_types

__version__ = "0.2.0"

_LAZY = {
    "Provider": "providers.base",
    "create_provider": "providers.registry",
    "provider_types": "providers.registry",
}


def __getattr__(name: str) -> _typing.Any:
    """Load the HTTP-dependent names on first use (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'providers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthError",
    "ChatEvent",
    "ChatMessage",
    "ChatRequest",
    "ConnectionFailedError",
    "ContextTooLongError",
    "FinishEvent",
    "ImageInput",
    "ImagesNotSupportedError",
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
    "accepts_images",
    "create_provider",
    "default_locality",
    "is_local_url",
    "provider_types",
    "require_images_accepted",
]
