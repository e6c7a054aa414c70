"""Provider types by name, found through the ``hushchat.providers`` entry-point group.

The built-in types (``openai``, ``ollama``, ``anthropic``) are declared in that
group like any third-party type. They are also known without it, so the
package works from a source checkout that was never installed, and a
third-party distribution cannot take over a built-in name: its entry is
skipped with a warning. A provider type is a class called as
``cls(spec, transport=transport)`` whose instances satisfy ``Provider``.
"""

from __future__ import annotations

import logging
from importlib import metadata

import httpx

from providers.base import Provider
from providers.errors import ProviderConfigError, UnknownProviderTypeError
from providers.spec import ProviderSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hushchat.providers"

_BUILTIN_TYPES = {
    "openai": "providers.openai:OpenAIProvider",
    "ollama": "providers.ollama:OllamaProvider",
    "anthropic": "providers.anthropic:AnthropicProvider",
}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points by type name: the built-ins, then the first entry for each other name."""
    found = {
        name: metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
        for name, value in _BUILTIN_TYPES.items()
    }
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _BUILTIN_TYPES:
            if entry.value != _BUILTIN_TYPES[entry.name]:
                logger.warning(
                    "ignoring provider type %r from %s: it is a built-in type",
                    entry.name,
                    entry.value,
                )
            continue
        if entry.name in found:
            logger.warning(
                "ignoring provider type %r from %s: already provided by %s",
                entry.name,
                entry.value,
                found[entry.name].value,
            )
            continue
        found[entry.name] = entry
    return found


def _load(entry: metadata.EntryPoint) -> type:
    """The class an entry point names; ``ProviderConfigError`` if it does not load."""
    try:
        loaded = entry.load()
    except (ImportError, AttributeError) as exc:
        raise ProviderConfigError(
            f"provider type {entry.name!r} ({entry.value}) failed to load: {exc}. Reinstall or "
            "remove the package that provides it."
        ) from exc
    if not isinstance(loaded, type):
        raise ProviderConfigError(
            f"provider type {entry.name!r} ({entry.value}) is not a class; the package that "
            "provides it is broken."
        )
    return loaded


def provider_types() -> dict[str, type]:
    """Every provider type that loads, by name (built-ins included), sorted by name.

    A third-party type that fails to load is left out and logged as a warning.
    """
    types: dict[str, type] = {}
    for name, entry in sorted(_entry_points().items()):
        try:
            types[name] = _load(entry)
        except ProviderConfigError as exc:
            logger.warning("%s", exc)
    return types


def create_provider(
    spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """A provider for ``spec``, of the type ``spec.type`` names.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests).
    Raises ``UnknownProviderTypeError`` listing the known types when the type
    is not registered, and ``ProviderConfigError`` (for example a template
    error, or a template on an ``anthropic`` entry) when the entry cannot work.
    """
    entries = _entry_points()
    entry = entries.get(spec.type)
    if entry is None:
        known = sorted(entries)
        raise UnknownProviderTypeError(
            f"{spec.type!r} is not a provider type; known types are {', '.join(known)}. "
            "Fix `type` in this entry, or install the package that provides the type.",
            provider=spec.name,
            known=known,
        )
    cls = _load(entry)
    provider = cls(spec, transport=transport)
    if not isinstance(provider, Provider):
        raise ProviderConfigError(
            f"provider type {spec.type!r} ({entry.value}) does not implement the Provider "
            "interface; the package that provides it is broken.",
            provider=spec.name,
        )
    return provider
