"""Adding, testing and removing LLM providers from the window (plain Python, no Qt).

The first-run page and the settings dialog share these coroutines and functions:

* ``detect_local_servers``: asks Ollama, llama.cpp and LM Studio on their default
  loopback ports for their models, all at once, with a short timeout;
* ``test_connection``: lists the models of an entry the user typed in;
* ``connection_problem``: one sentence for a failed test, naming the URL and what to do;
* ``save_provider`` / ``remove_provider``: edit ``llms:`` in the config file (comments
  kept, atomic write); ``save_attachment_settings`` writes ``attachments:`` and the
  entries' ``embedding_model``; ``save_voice_settings`` writes ``default_tts`` and a
  ``tts:`` entry's voice and rate, ``add_system_voices`` a ``- type: system`` entry.
  An API key goes to the vault or the OS keychain through ``app.api_keys`` and the
  file says only ``api_key: vault`` or ``api_key: keychain``; the key is never written
  to the file.

Keychain and database calls block (D-Bus, Keychain Services, SQLCipher), so widgets
run the save/remove functions through ``BlockingRunner.blocking``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.api_keys import KEY_PLACES, ApiKeys, KeyPlace
from app.config import LLMEntry, LoadedConfig, update_config_file
from app.errors import ConfigError
from app.provider_presets import preset_named
from providers import (
    AuthError,
    Locality,
    ProviderConfigError,
    ProviderError,
    ProviderSpec,
    ProviderTimeoutError,
    RateLimitedError,
    create_provider,
    default_locality,
)

__all__ = [
    "DEFAULT_LOCAL_SERVERS",
    "SYSTEM_VOICES_NAME",
    "DetectedServer",
    "LocalServer",
    "add_system_voices",
    "connection_problem",
    "detect_local_servers",
    "remove_provider",
    "save_attachment_settings",
    "save_provider",
    "save_voice_settings",
    "test_connection",
]

log = logging.getLogger(__name__)

DETECT_TIMEOUT_SECONDS = 2.0

# The llms: fields the provider form edits (app/ui/provider_form.py); saving an entry
# never drops the others.
FORM_FIELDS = frozenset(
    {"provider_name", "type", "base_url", "model_name", "context_size", "locality"}
)

# Config writes are read-modify-write of one file: one at a time, so none is lost.
_config_write = threading.Lock()


@dataclass(frozen=True)
class LocalServer:
    """A kind of local LLM server and where it listens by default."""

    label: str
    provider_name: str
    type: str
    base_url: str


DEFAULT_LOCAL_SERVERS: tuple[LocalServer, ...] = tuple(
    LocalServer(preset.label, preset.provider_name, preset.type, preset.base_url)
    for preset in map(preset_named, ("ollama", "llama-cpp", "lm-studio"))
)


@dataclass(frozen=True)
class DetectedServer:
    """A local server that answered, with the models it offers."""

    server: LocalServer
    models: tuple[str, ...]


def _spec(entry: Mapping[str, Any], api_key: str | None = None) -> ProviderSpec:
    from pydantic import SecretStr

    base_url = str(entry["base_url"]).rstrip("/")
    locality = Locality(entry.get("locality") or default_locality(base_url) or Locality.PAID_CLOUD)
    return ProviderSpec(
        name=str(entry.get("provider_name") or "test"),
        type=str(entry["type"]),
        base_url=base_url,
        model=str(entry.get("model_name") or "unknown"),
        locality=locality,
        api_key=SecretStr(api_key) if api_key else None,
        timeout=float(entry.get("timeout") or DETECT_TIMEOUT_SECONDS * 5),
        max_retries=0,
    )


async def test_connection(entry: Mapping[str, Any], api_key: str | None = None) -> list[str]:
    """The model ids the server of ``entry`` reports; raises ``ProviderError`` if it fails.

    ``entry`` holds the fields of an ``llms:`` item as typed (type, base_url, ...).
    """
    provider = create_provider(_spec(entry, api_key))
    try:
        models = await provider.list_models()
    finally:
        await provider.aclose()
    return [model.id for model in models]


def connection_problem(error: BaseException, base_url: str) -> str:
    """One sentence for a failed connection test: what happened at ``base_url`` and
    what to do, without the provider layer's field names (``base_url``, ``api_key``)."""
    url = base_url.strip().rstrip("/") or "that address"
    text = str(getattr(error, "message", "") or error)
    if isinstance(error, AuthError):
        if error.status == 403:
            return f"The server at {url} refused access; check that the API key may use its models."
        return f"The server at {url} did not accept the API key; check the key and type it again."
    if isinstance(error, RateLimitedError):
        return f"The server at {url} is limiting requests; wait a moment and test again."
    if isinstance(error, ProviderConfigError):
        return f"{url} is not a usable address; it should start with http:// or https://."
    if isinstance(error, ProviderTimeoutError):
        return (
            f"The server at {url} did not answer in time; check that it is running and "
            "reachable, then test again."
        )
    if isinstance(error, ProviderError) and error.status == 404:
        return (
            f"The server at {url} has no model list there; check the address (for most "
            "OpenAI-compatible servers it ends in /v1)."
        )
    if isinstance(error, ProviderError) and error.status is not None:
        return (
            f"The server at {url} answered with an error (HTTP {error.status}); check the "
            "address and the key, then test again."
        )
    if "resolve the host" in text:
        return f"The host of {url} was not found; check the address and the network connection."
    if "TLS handshake" in text:
        return f"The secure connection to {url} failed; check http:// or https:// in the address."
    if isinstance(error, ProviderError | TimeoutError | OSError):
        return (
            f"Nothing answered at {url}; check that the server is running and that the "
            "address is right."
        )
    return f"The test of {url} failed ({type(error).__name__}); check the address and try again."


async def _probe(server: LocalServer) -> DetectedServer | None:
    entry = {
        "provider_name": server.provider_name,
        "type": server.type,
        "base_url": server.base_url,
    }
    try:
        models = await asyncio.wait_for(test_connection(entry), DETECT_TIMEOUT_SECONDS)
    except (ProviderError, TimeoutError, OSError) as error:
        log.debug("no %s at %s: %s", server.label, server.base_url, error)
        return None
    return DetectedServer(server, tuple(models))


async def detect_local_servers(
    candidates: Sequence[LocalServer] = DEFAULT_LOCAL_SERVERS,
) -> list[DetectedServer]:
    """Ask every candidate at once; return those that answered, in candidate order."""
    results = await asyncio.gather(*(_probe(server) for server in candidates))
    return [result for result in results if result is not None]


def _config_path(config: LoadedConfig) -> Path:
    from app.config import default_config_path

    return config.path or default_config_path()


def save_provider(
    config: LoadedConfig,
    entry: Mapping[str, Any],
    *,
    keys: ApiKeys,
    api_key: str | None = None,
    key_place: KeyPlace | None = None,
    replaces: str | None = None,
    make_default: bool = False,
) -> LoadedConfig:
    """Add or replace an ``llms:`` entry; keep ``api_key`` in the vault or the keychain.

    ``replaces`` names the entry being edited (it may be renamed). ``key_place`` is
    where a key is kept: None for the keychain when one answers, else the vault. An
    empty ``api_key`` keeps whatever key the entry had; a kept one follows a rename or
    a new ``key_place``. Blocking: run it off the UI thread. Returns the re-validated
    config.
    """
    name = str(entry["provider_name"])
    values = {key: value for key, value in entry.items() if value not in (None, "")}
    old_name = replaces or name
    old = next((e for e in config.config.llms if e.provider_name == old_name), None)
    old_place = next((p for p in KEY_PLACES if old is not None and old.api_key == p), None)
    if api_key:
        LLMEntry.model_validate({**values, "api_key": "vault"})  # before anything is kept
        values["api_key"] = keys.save(name, api_key, key_place)
        if old_place is not None and old_name != name:
            keys.delete(old_name)
    elif old_place is not None:
        new_place = key_place or old_place
        LLMEntry.model_validate({**values, "api_key": new_place})
        keys.move(old_name, old_place, name, new_place)
        values["api_key"] = new_place
    LLMEntry.model_validate(values)  # a clear error before the file is touched

    def change(document: CommentedMap) -> None:
        llms = document.get("llms")
        if not isinstance(llms, CommentedSeq):
            llms = CommentedSeq()
            document["llms"] = llms
        old_name = replaces or name
        index = next(
            (
                i
                for i, item in enumerate(llms)
                if isinstance(item, CommentedMap) and item.get("provider_name") == old_name
            ),
            None,
        )
        if index is None:
            item = CommentedMap()
            llms.append(item)
        else:
            item = llms[index]
            # Fields the form edits and left empty are removed; the others (proxy,
            # timeouts, template, an api_key not retyped) are kept as they were.
            for key in [k for k in item if k in FORM_FIELDS and k not in values]:
                del item[key]
        for key, value in values.items():
            item[key] = value
        if make_default or (replaces and document.get("default_llm") == replaces):
            document["default_llm"] = name

    with _config_write:
        return update_config_file(_config_path(config), change, config.env)


def remove_provider(config: LoadedConfig, name: str, *, keys: ApiKeys) -> LoadedConfig:
    """Remove the ``llms:`` entry ``name`` and its kept key (vault or keychain). Blocking."""

    def change(document: CommentedMap) -> None:
        llms = document.get("llms")
        if isinstance(llms, CommentedSeq):
            for index in reversed(range(len(llms))):
                item = llms[index]
                if isinstance(item, CommentedMap) and item.get("provider_name") == name:
                    del llms[index]
        if document.get("default_llm") == name:
            del document["default_llm"]
        if document.get("title_llm") == name:
            del document["title_llm"]

    with _config_write:
        updated = update_config_file(_config_path(config), change, config.env)
    keys.delete(name)
    return updated


def save_ui_settings(config: LoadedConfig, values: Mapping[str, Any]) -> LoadedConfig:
    """Write ``ui:`` settings (theme, font size, send key, auto-lock) to the config file."""
    from app.config import set_section

    def change(document: CommentedMap) -> None:
        set_section(document, "ui", values)

    with _config_write:
        return update_config_file(_config_path(config), change, config.env)


def save_attachment_settings(
    config: LoadedConfig,
    values: Mapping[str, Any],
    embedding_models: Mapping[str, str | None],
) -> LoadedConfig:
    """Write ``attachments:`` settings (``values``) and each named ``llms:`` entry's
    ``embedding_model`` (None or "": removed, keyword search only). Blocking; the file
    is validated before it is written (ConfigError, file unchanged)."""
    from app.config import set_section

    def change(document: CommentedMap) -> None:
        set_section(document, "attachments", values)
        llms = document.get("llms")
        if not isinstance(llms, CommentedSeq):
            return
        for item in llms:
            if not isinstance(item, CommentedMap):
                continue
            name = item.get("provider_name")
            if name not in embedding_models:
                continue
            model = (embedding_models[name] or "").strip()
            if model:
                item["embedding_model"] = model
            elif "embedding_model" in item:
                del item["embedding_model"]

    with _config_write:
        return update_config_file(_config_path(config), change, config.env)


def save_voice_settings(
    config: LoadedConfig, engine: str, voice: str | None, speed: float
) -> LoadedConfig:
    """Make the ``tts:`` entry ``engine`` the default (``default_tts``) and set its
    ``voice`` (None or "": the engine's default, the key removed) and ``speed``. Blocking;
    the file is validated before it is written (ConfigError, file unchanged)."""

    def change(document: CommentedMap) -> None:
        entries = document.get("tts")
        item = next(
            (
                entry
                for entry in (entries if isinstance(entries, CommentedSeq) else [])
                if isinstance(entry, CommentedMap) and entry.get("name") == engine
            ),
            None,
        )
        if item is None:
            raise ConfigError(
                f"no speech engine named '{engine}' in the config file; add it under 'tts:'"
            )
        document["default_tts"] = engine
        chosen = (voice or "").strip()
        if chosen:
            item["voice"] = chosen
        elif "voice" in item:
            del item["voice"]
        if speed == 1.0 and "speed" in item:
            del item["speed"]  # the default: not written
        elif speed != 1.0:
            item["speed"] = round(float(speed), 2)

    with _config_write:
        return update_config_file(_config_path(config), change, config.env)


#: The name ``add_system_voices`` gives the system voices' entry (another if taken).
SYSTEM_VOICES_NAME = "system-voice"


def add_system_voices(config: LoadedConfig) -> LoadedConfig:
    """Add ``- type: system`` (the operating system's voices, always on-prem) under
    ``tts:``, named ``system-voice`` (or ``system-voice-2``... if taken), and make it the
    default when no ``default_tts`` is set. Blocking."""
    taken = {entry.name for entry in config.config.tts}
    name = SYSTEM_VOICES_NAME
    number = 2
    while name in taken:
        name = f"{SYSTEM_VOICES_NAME}-{number}"
        number += 1

    def change(document: CommentedMap) -> None:
        entries = document.get("tts")
        if not isinstance(entries, CommentedSeq):
            entries = CommentedSeq()
            document["tts"] = entries
        item = CommentedMap()
        item["type"] = "system"
        item["name"] = name
        entries.append(item)
        if not document.get("default_tts"):
            document["default_tts"] = name

    with _config_write:
        return update_config_file(_config_path(config), change, config.env)
