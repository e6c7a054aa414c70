"""The schema of ``.config.yml``, how it is found and loaded, and its example file.

The pydantic models below are the single source of truth: every field carries a
description that feeds ``.config.yml.example`` (``render_example``), the docs and
later the settings UI. Loading substitutes ``${VAR}`` / ``${VAR:-default}`` from
the environment, then validates; every problem is reported with the file, line,
field path and what is allowed, e.g.::

    /home/me/.config/hushchat/config.yml:7: llms[1].type: 'olama' is not a
    provider type; did you mean 'ollama'?

The keys of the original web app's config (``llms`` entries with
``provider_name``, ``type``, ``base_url``, ``model_name``, ``context_size``,
``template``, ``api_key``, and ``default_llm``) keep their meaning.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from app.errors import ConfigError
from app.privacy.policy import least_private
from providers import Locality, ProviderSpec, default_locality

CONFIG_ENV = "HUSHCHAT_CONFIG"
APP_NAME = "hushchat"
_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LLMEntry(BaseModel):
    """One LLM server and model the app may talk to."""

    model_config = ConfigDict(extra="forbid")

    provider_name: Annotated[
        str,
        Field(
            min_length=1,
            description="Unique name of this entry; chats and the command line refer to it.",
        ),
    ]
    type: Annotated[
        str,
        Field(
            description=(
                "Wire format: openai (any OpenAI-compatible server: llama.cpp, LM Studio, vLLM, "
                "OpenRouter, ...), ollama, anthropic, or a type added by a plug-in."
            )
        ),
    ]
    base_url: Annotated[
        str,
        Field(
            description=(
                "Base URL of the server's API, e.g. http://127.0.0.1:8080/v1 for llama.cpp, "
                "http://127.0.0.1:11434 for Ollama."
            )
        ),
    ]
    model_name: Annotated[str, Field(min_length=1, description="Model name sent to the server.")]
    context_size: Annotated[
        int,
        Field(gt=0, description="Context window of the model in tokens; history is trimmed to it."),
    ] = 4096
    temperature: Annotated[
        float | None,
        Field(
            ge=0,
            le=2,
            description=(
                "Default sampling temperature (0 to 2) of chats using this entry; a chat's own "
                "setting wins. null: the server's default."
            ),
        ),
    ] = None
    top_p: Annotated[
        float | None,
        Field(
            gt=0,
            le=1,
            description=(
                "Default nucleus sampling top-p (above 0, at most 1) of chats using this entry; "
                "a chat's own setting wins. null: the server's default."
            ),
        ),
    ] = None
    max_tokens: Annotated[
        int | None,
        Field(
            gt=0,
            description=(
                "Default longest answer in tokens of chats using this entry (bounds a runaway "
                "answer); a chat's own setting wins. null: the server's default."
            ),
        ),
    ] = None
    stop: Annotated[
        list[str] | None,
        Field(
            description=(
                "Default stop sequences of chats using this entry: the answer ends before any "
                "of them; a chat's own setting wins. null: none."
            ),
        ),
    ] = None
    template: Annotated[
        str | None,
        Field(
            description=(
                "Optional Jinja template turning system_prompt, memory, history and prompt into "
                "one raw prompt (sent to /v1/completions or Ollama /api/generate)."
            )
        ),
    ] = None
    vision: Annotated[
        bool | None,
        Field(
            description=(
                "Whether the model accepts images: true or false overrides Hushchat's list of "
                "known vision models (gpt-4o, claude-3 and later, llava, llama3.2-vision, "
                "qwen2.5-vl, gemma3, ...). null: decide by that list; images for a model not "
                "on it are refused before sending."
            )
        ),
    ] = None
    api_key: Annotated[
        str | None,
        Field(
            description=(
                "API key reference, never the key itself: ${ENV_VAR} to read it from the "
                "environment, 'vault' for a key kept in the vault (encrypted with the Standard "
                "chats) or 'keychain' for one kept in the OS keychain (both set from Settings)."
            )
        ),
    ] = None
    locality: Annotated[
        Locality | None,
        Field(
            description=(
                "Where the model runs: on_prem, free_cloud or paid_cloud. Decides which privacy "
                "tiers may use it. Defaults to on_prem for loopback and private-network URLs; "
                "required for any other URL."
            )
        ),
    ] = None
    timeout: Annotated[
        float, Field(gt=0, description="Seconds to wait for a connection or the next chunk.")
    ] = 60.0
    max_retries: Annotated[
        int,
        Field(ge=0, le=10, description="Retries of safe failures (connect, 429/503 before text)."),
    ] = 2
    stream_idle_timeout: Annotated[
        float,
        Field(
            gt=0,
            description=(
                "Seconds an answer may stream without any content (text, reasoning, usage or its "
                "end) before it fails with the partial answer kept; keep-alives the server sends "
                "do not count."
            ),
        ),
    ] = 60.0
    proxy: Annotated[
        str | None,
        Field(
            description=(
                "Optional http:// or https:// proxy to reach the server through (credentials: "
                "${ENV_VAR}). Without it, on-prem entries always connect directly, whatever "
                "proxy the environment or system sets; cloud entries use that proxy."
            )
        ),
    ] = None
    proxy_locality: Annotated[
        Locality | None,
        Field(
            description=(
                "Where the proxy runs: on_prem, free_cloud or paid_cloud. The privacy tiers "
                "judge the entry by the less private of locality and proxy_locality. Defaults "
                "to on_prem for a loopback or private-network proxy; required for any other."
            )
        ),
    ] = None
    embedding_model: Annotated[
        str | None,
        Field(
            min_length=1,
            description=(
                "Embedding model on this server (OpenAI-compatible /embeddings or Ollama "
                "/api/embed) used to find the relevant parts of long attachments; null: "
                "keyword search (BM25) only. Sent only where the chat's privacy tier allows "
                "this entry."
            ),
        ),
    ] = None

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _checked_base_url(value)

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            usable = parts.scheme in {"http", "https"} and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            usable = False
        if not usable:
            raise ValueError(
                f"{_without_credentials(value)!r} is not an http:// or https:// proxy URL"
            )
        return value.rstrip("/")

    @property
    def effective_locality(self) -> Locality:
        """Where the chat's words go: the server's locality (declared, or the default for a
        local URL) or, through a ``proxy``, the less private of it and the proxy's."""
        locality = self.locality or default_locality(self.base_url)
        if locality is None:  # validated by Config; kept for type narrowing
            raise ConfigError(f"{self.provider_name}: locality is required for {self.base_url}")
        if self.proxy is None:
            return locality
        proxy_locality = self.proxy_locality or default_locality(self.proxy)
        if proxy_locality is None:  # validated by Config; kept for type narrowing
            raise ConfigError(f"{self.provider_name}: proxy_locality is required for its proxy")
        return least_private(locality, proxy_locality)

    def to_spec(self, api_key: str | None = None) -> ProviderSpec:
        """The provider layer's spec for this entry, with the resolved API key."""
        return ProviderSpec(
            name=self.provider_name,
            type=self.type,
            base_url=self.base_url,
            model=self.model_name,
            locality=self.effective_locality,
            context_size=self.context_size,
            template=self.template,
            vision=self.vision,
            api_key=SecretStr(api_key) if api_key else None,
            timeout=self.timeout,
            max_retries=self.max_retries,
            stream_idle_timeout=self.stream_idle_timeout,
            proxy=self.proxy,
        )


#: The speech engine types (app/speech/engines.py).
TTS_TYPES = ("system", "openai", "xtts")
#: Audio formats an OpenAI-compatible speech server may be asked for.
TTS_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def _checked_base_url(value: str) -> str:
    """``value`` without a trailing slash; ValueError unless it is an http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


class TTSEntry(BaseModel):
    """One text-to-speech engine answers may be read aloud with (app/speech)."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[
        Literal["system", "openai", "xtts"],
        Field(
            description=(
                "Engine: system (the operating system's voices, in the window), openai (an "
                "OpenAI-compatible POST /v1/audio/speech: OpenAI, Kokoro-FastAPI, LocalAI, "
                "openedai-speech) or xtts (an XTTS API server, POST /tts_to_audio/)."
            )
        ),
    ]
    name: Annotated[
        str,
        Field(
            min_length=1,
            description="Unique name of this engine; default_tts and `hushchat speak --engine` "
            "refer to it.",
        ),
    ]
    base_url: Annotated[
        str | None,
        Field(
            description=(
                "Base URL of the speech server, e.g. http://127.0.0.1:8880/v1 for Kokoro-FastAPI, "
                "https://api.openai.com/v1, http://127.0.0.1:8020 for an XTTS API server; "
                "required for openai and xtts, none for system."
            )
        ),
    ] = None
    api_key: Annotated[
        str | None,
        Field(
            description=(
                "API key reference, as for llms entries: ${ENV_VAR}, 'vault' or 'keychain' "
                "(kept under the name tts/<name>); never the key itself."
            )
        ),
    ] = None
    model: Annotated[
        str | None,
        Field(
            min_length=1,
            description="openai: the speech model sent to the server (default tts-1; Kokoro: "
            "kokoro).",
        ),
    ] = None
    voice: Annotated[
        str | None,
        Field(
            min_length=1,
            description=(
                "openai: the voice (default alloy; Kokoro: af_heart, ...); xtts: the speaker, "
                "a speaker_wav name the server knows (GET /speakers_list); system: a voice "
                "name of the operating system. null: the engine's default."
            ),
        ),
    ] = None
    speed: Annotated[
        float,
        Field(
            ge=0.25,
            le=4.0,
            description="Speaking rate, 0.25 to 4.0 (1.0: normal). XTTS servers set it on the "
            "server instead.",
        ),
    ] = 1.0
    format: Annotated[
        Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None,
        Field(
            description="openai: the audio format asked for: mp3, opus, aac, flac, wav or pcm; "
            "xtts servers answer wav only. null: mp3 for openai, wav for xtts.",
        ),
    ] = None
    language: Annotated[
        str,
        Field(
            min_length=2,
            description="xtts: the language of the text (en, de, fr, es, ...).",
        ),
    ] = "en"
    locality: Annotated[
        Locality | None,
        Field(
            description=(
                "Where the engine runs, as for llms entries: on_prem, free_cloud or paid_cloud; "
                "decides which privacy tiers may send it their answers. Defaults to on_prem for "
                "loopback and private-network URLs (and system voices); required for any other "
                "URL."
            )
        ),
    ] = None
    timeout: Annotated[
        float,
        Field(gt=0, description="Seconds to wait for a connection or the next audio bytes."),
    ] = 60.0

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _checked_base_url(value)

    @property
    def audio_format(self) -> str:
        """The format the engine is asked for: ``format``, else its type's default."""
        return self.format or ("wav" if self.type == "xtts" else "mp3")

    @property
    def provider_name(self) -> str:
        """The name this engine's API key is kept under (app/api_keys.py): ``tts/<name>``,
        apart from the keys of llms entries."""
        return f"tts/{self.name}"

    @property
    def effective_locality(self) -> Locality:
        """Where the text goes: on-prem for system voices, else the declared locality or
        the default for a local ``base_url`` (the same rule as llms entries)."""
        if self.type == "system":
            return Locality.ON_PREM
        locality = self.locality or (default_locality(self.base_url) if self.base_url else None)
        if locality is None:  # validated by Config; kept for type narrowing
            raise ConfigError(f"tts {self.name}: locality is required for {self.base_url}")
        return locality


class LoggingSettings(BaseModel):
    """Where and how the app logs. Message content, keys and tokens are never logged."""

    model_config = ConfigDict(extra="forbid")

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        Field(description="Lowest level written: DEBUG, INFO, WARNING or ERROR."),
    ] = "WARNING"
    format: Annotated[
        Literal["human", "json"],
        Field(description="human: one readable line per record; json: one JSON object per line."),
    ] = "human"


class UISettings(BaseModel):
    """How the desktop window looks and behaves."""

    model_config = ConfigDict(extra="forbid")

    theme: Annotated[
        Literal["system", "light", "dark"],
        Field(description="Colour theme: system (follow the desktop), light or dark."),
    ] = "system"
    font_size: Annotated[
        int,
        Field(ge=8, le=32, description="Base font size of the window in points (8-32)."),
    ] = 11
    send_key: Annotated[
        Literal["enter", "ctrl_enter"],
        Field(
            description=(
                "Which key sends a message: enter (Shift+Enter makes a new line) or ctrl_enter "
                "(Enter makes a new line)."
            )
        ),
    ] = "enter"
    code_blocks: Annotated[
        Literal["wrap", "scroll"],
        Field(
            description=(
                "Code lines longer than a message is wide: wrap (shown on several lines) or "
                "scroll (the block scrolls sideways with Shift+wheel)."
            )
        ),
    ] = "wrap"
    auto_lock_minutes: Annotated[
        int,
        Field(
            ge=0,
            le=1440,
            description="Lock the vault after this many idle minutes; 0 never locks on idle.",
        ),
    ] = 15


#: Where ``updates.check`` reads the latest release (app/updates.py).
DEFAULT_RELEASES_URL = "https://api.github.com/repos/hushchat/hushchat/releases/latest"


class UpdateSettings(BaseModel):
    """The opt-in check for a newer release (app/updates.py)."""

    model_config = ConfigDict(extra="forbid")

    check: Annotated[
        bool,
        Field(
            description=(
                "Ask the project's release page for a newer version once a run, after "
                "unlocking, and "
                "show a link to it. Off by default; never downloads anything."
            )
        ),
    ] = False
    url: Annotated[
        str,
        Field(
            pattern=r"^https://\S+$",
            description="Where the latest release is read (GitHub's latest-release API).",
        ),
    ] = DEFAULT_RELEASES_URL


class AttachmentSettings(BaseModel):
    """Files attached to chats: size limit, and when a long one is searched instead of sent."""

    model_config = ConfigDict(extra="forbid")

    max_size_mb: Annotated[
        int,
        Field(ge=1, le=1024, description="Largest file that may be attached, in MB (1-1024)."),
    ] = 50
    inline_max_chars: Annotated[
        int,
        Field(
            ge=0,
            le=1_000_000,
            description=(
                "An attachment's text up to this many characters is sent whole with the "
                "question; a longer one is split into chunks and only the most relevant "
                "chunks are sent (0: always search)."
            ),
        ),
    ] = 12000
    retrieval_chunks: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="How many of a long attachment's most relevant chunks are sent (1-100).",
        ),
    ] = 6


class Config(BaseModel):
    """The whole ``.config.yml``."""

    model_config = ConfigDict(extra="forbid")

    default_llm: Annotated[
        str | None,
        Field(description="provider_name of the entry new chats use (default: the first one)."),
    ] = None
    title_llm: Annotated[
        str | None,
        Field(
            description=(
                "provider_name of the entry that writes chat titles (default: the chat's own). "
                "Used only where the chat's privacy tier allows it."
            )
        ),
    ] = None
    llms: Annotated[
        list[LLMEntry], Field(description="The LLM servers and models Hushchat may talk to.")
    ] = Field(default_factory=list)
    logging: Annotated[LoggingSettings, Field(description="Logging settings.")] = Field(
        default_factory=LoggingSettings
    )
    ui: Annotated[UISettings, Field(description="Desktop window settings.")] = Field(
        default_factory=UISettings
    )
    updates: Annotated[UpdateSettings, Field(description="Checking for a newer release.")] = Field(
        default_factory=UpdateSettings
    )
    attachments: Annotated[AttachmentSettings, Field(description="Files attached to chats.")] = (
        Field(default_factory=AttachmentSettings)
    )
    default_tts: Annotated[
        str | None,
        Field(
            description=(
                "name of the tts entry answers are read aloud with (default: the first one the "
                "chat's privacy tier allows)."
            )
        ),
    ] = None
    tts: Annotated[
        list[TTSEntry],
        Field(description="Text-to-speech engines answers may be read aloud with."),
    ] = Field(default_factory=list)

    def llm(self, name: str | None = None) -> LLMEntry:
        """The entry called ``name``, or the default one; ConfigError if there is none."""
        if not self.llms:
            raise ConfigError(
                "no LLM providers are configured; add one under 'llms:' in your config file "
                "(see .config.yml.example)"
            )
        wanted = name or self.default_llm or self.llms[0].provider_name
        for entry in self.llms:
            if entry.provider_name == wanted:
                return entry
        names = [e.provider_name for e in self.llms]
        hint = _did_you_mean(wanted, names)
        raise ConfigError(
            f"no provider named '{wanted}'{hint}; configured: {', '.join(names)}",
        )


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from (``path`` is None for defaults)."""

    config: Config
    path: Path | None
    env: Mapping[str, str]


def _without_credentials(url: str) -> str:
    """``url`` without any ``user:password@``: safe to show in an error message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(malformed URL)"
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def default_config_path() -> Path:
    """Where the config lives when neither --config nor HUSHCHAT_CONFIG says otherwise."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.yml"


def find_config(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """``--config FILE``, else ``$HUSHCHAT_CONFIG``, else the platform config file if it exists.

    An explicitly named file must exist; a missing default file means defaults.
    """
    chosen = explicit or env.get(CONFIG_ENV) or None
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise ConfigError(f"{path}: config file not found (named by {source})")
        return path
    path = default_config_path()
    return path if path.is_file() else None


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    provider_types: Callable[[], Iterator[str] | list[str] | set[str]] | None = None,
) -> LoadedConfig:
    """Find, read, substitute and validate the config; ConfigError lists every problem."""
    env = dict(os.environ if env is None else env)
    path = find_config(explicit, env)
    if path is None:
        return LoadedConfig(Config(), None, env)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from error
    return LoadedConfig(parse_config(text, str(path), env, provider_types), path, env)


def update_config_file(
    path: Path,
    change: Callable[[CommentedMap], None],
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Apply ``change`` to the YAML document at ``path`` and write it back atomically.

    The document is edited as ruamel.yaml round-trip data, so comments, key order and
    ``${VAR}`` references survive (values are never written substituted). The result is
    validated before anything is written: an invalid change raises ConfigError and leaves
    the file as it was. A missing file is created (mode 0600). Returns the new config.
    """
    from io import StringIO

    from app.vault.atomic_file import write_atomically  # atomic temp + fsync + rename

    env = dict(os.environ if env is None else env)
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    document = yaml.load(text) if text.strip() else None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise ConfigError(f"{path}:1: the config must be a mapping of settings at the top level")
    change(document)
    buffer = StringIO()
    yaml.dump(document, buffer)
    new_text = buffer.getvalue()
    config = parse_config(new_text, str(path), env)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, new_text.encode("utf-8"))
    return LoadedConfig(config, path, env)


def save_config(path: Path, config: Config, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Write ``config``'s ``ui``, ``default_llm`` and ``llms`` back into ``path``.

    Keeps comments of the existing file. ``api_key`` values are written as they are in
    the model, so pass entries whose key is ``keychain`` or a ``${VAR}`` reference, never
    a key itself (parse_config refuses literal keys anyway).
    """

    def change(document: CommentedMap) -> None:
        set_section(document, "ui", config.ui.model_dump(mode="json"))
        document["default_llm"] = config.default_llm
        existing = {
            str(item.get("provider_name")): item
            for item in document.get("llms") or []
            if isinstance(item, CommentedMap)
        }
        entries = CommentedSeq()
        for entry in config.llms:
            data = entry.model_dump(mode="json", exclude_defaults=True)
            data["provider_name"] = entry.provider_name
            item = existing.get(entry.provider_name, CommentedMap())
            for key in [k for k in item if k not in data]:
                del item[key]
            for key, value in data.items():
                item[key] = value
            entries.append(item)
        document["llms"] = entries

    return update_config_file(path, change, env)


def set_section(document: CommentedMap, name: str, values: Mapping[str, Any]) -> None:
    """Set ``document[name]`` to ``values`` key by key, keeping its comments."""
    section = document.get(name)
    if not isinstance(section, CommentedMap):
        section = CommentedMap()
        document[name] = section
    for key, value in values.items():
        section[key] = value


def parse_config(
    text: str,
    source: str,
    env: Mapping[str, str],
    provider_types: Callable[[], Iterator[str] | list[str] | set[str]] | None = None,
) -> Config:
    """Validate the YAML ``text``; ``source`` names it in error messages."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _ConfigConstructor
    yaml.max_depth = _MAX_DEPTH  # deeper nesting: a MarkedYAMLError, not a RecursionError
    try:
        document = yaml.load(text)
    except MaxDepthExceededError as error:
        line = error.problem_mark.line + 1 if error.problem_mark is not None else 1
        raise ConfigError(
            f"{source}:{line}: not valid YAML: nested more than {_MAX_DEPTH} levels deep"
        ) from error
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {error.problem}") from error
    except ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise ConfigError(
            f"{source}:{line}: not valid YAML: the control character "
            f"U+{error.character:04X} is not allowed"
        ) from error
    if document is None:
        return Config()
    if not isinstance(document, CommentedMap):
        raise ConfigError(f"{source}:1: the config must be a mapping of settings at the top level")
    _check_expansion(document, source)

    problems: list[str] = []
    data = _substitute(document, document, (), env, source, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            loc = tuple(item["loc"])
            problems.append(
                f"{source}:{_line_of(document, loc)}: {_dotted(loc)}: {_explain(item, loc)}"
            )
        raise ConfigError("\n".join(problems)) from error
    _check_semantics(config, document, source, problems, provider_types)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


#: Nesting deeper than any config needs is refused by the YAML composer.
_MAX_DEPTH = 64
#: The most values (mappings, lists, scalars; an alias counts each time it is used) a
#: config may hold. Aliases nested in aliases ("billion laughs") would otherwise expand a
#: few hundred bytes into billions of values, and the loader would run for hours.
_MAX_VALUES = 10_000


class _ConfigConstructor(RoundTripConstructor):
    """ruamel's round-trip constructor, its crashes on malformed tagged values reported.

    ``!!int 0x``, ``!!bool maybe``, ``!!set x`` or ``!!timestamp 2001-02-30`` make the
    library's constructors raise ValueError, KeyError, IndexError or AttributeError;
    they become a ``ConstructorError`` at the value's position.
    """

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except _LIBRARY_FAILURES as error:
            raise ConstructorError(
                None, None, f"cannot read this {node.tag} value", node.start_mark
            ) from error

    def construct_document(self, node: Any) -> Any:
        # Collections are filled in after their parents; a failure there (a list inside a
        # list used as a key, "? [[a]]") has no node of its own to point at.
        try:
            return super().construct_document(node)
        except _LIBRARY_FAILURES as error:
            raise ConstructorError(
                None, None, f"cannot read this document ({type(error).__name__})", node.start_mark
            ) from error


_LIBRARY_FAILURES = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)


def _check_expansion(document: CommentedMap, source: str) -> None:
    """Refuse a document of more than ``_MAX_VALUES`` values once aliases are expanded."""
    count = 0
    line = 1
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        count += 1
        if count > _MAX_VALUES:
            raise ConfigError(
                f"{source}:{line}: the config holds more than {_MAX_VALUES:,} values once its "
                "aliases (*name) are expanded; write the values out instead"
            )
        if isinstance(node, CommentedMap | CommentedSeq):
            line = node.lc.line + 1 if node.lc.line is not None else line
            stack.extend(node.values() if isinstance(node, CommentedMap) else node)


def _substitute(
    document: CommentedMap,
    node: object,
    loc: tuple[str | int, ...],
    env: Mapping[str, str],
    source: str,
    out: list[str],
) -> Any:
    """A plain copy of ``node`` with ``${VAR}`` substituted in every string."""
    if isinstance(node, CommentedMap):
        return {k: _substitute(document, v, (*loc, k), env, source, out) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_substitute(document, v, (*loc, i), env, source, out) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    line = _line_of(document, loc)
    kept = node in ("keychain", "vault")  # a key the window keeps (app/api_keys.py)
    if loc and loc[-1] == "api_key" and node and not kept and "${" not in node:
        out.append(
            f"{source}:{line}: {_dotted(loc)}: write a reference, not "
            "the key itself: api_key: ${ENV_VAR} (set ENV_VAR in the environment), or enter "
            "the key in Settings, Providers (the file then says api_key: vault or keychain)"
        )
        return None

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        out.append(
            f"{source}:{line}: {_dotted(loc)}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}})"
        )
        return ""

    return _ENV_PATTERN.sub(replace, node)


#: The provider types ``providers.registry`` always knows, and the entry-point group through
#: which a plug-in adds others. Checking names against these imports no provider module
#: (httpx, Jinja: start-up time); a test keeps them equal to the registry's.
BUILTIN_PROVIDER_TYPES = ("anthropic", "ollama", "openai")
PROVIDER_ENTRY_POINT_GROUP = "hushchat.providers"


def installed_provider_types() -> list[str]:
    """The built-in provider types and the names of the installed plug-ins' types, sorted.

    Reads entry-point names from package metadata without importing a plug-in, so a
    plug-in that fails to load passes here and fails with a clear error on first use.
    """
    from importlib import metadata

    names = set(BUILTIN_PROVIDER_TYPES)
    names.update(entry.name for entry in metadata.entry_points(group=PROVIDER_ENTRY_POINT_GROUP))
    return sorted(names)


def _check_semantics(
    config: Config,
    document: CommentedMap,
    source: str,
    problems: list[str],
    provider_types: Callable[[], Iterator[str] | list[str] | set[str]] | None,
) -> None:
    """Checks that span fields: known types, localities, unique names, default_llm."""
    types_used = {entry.type for entry in config.llms}
    if provider_types is not None:
        known = sorted(provider_types())
    elif types_used <= set(BUILTIN_PROVIDER_TYPES):
        known = list(BUILTIN_PROVIDER_TYPES)  # the usual case: no package metadata to read
    else:
        known = installed_provider_types()
    seen: set[str] = set()
    for index, entry in enumerate(config.llms):
        where = ("llms", index)
        if entry.type not in known:
            hint = _did_you_mean(entry.type, known)
            problems.append(
                f"{source}:{_line_of(document, (*where, 'type'))}: llms[{index}].type: "
                f"{entry.type!r} is not a provider type{hint}; known: {', '.join(known)}"
            )
        problems += _locality_problems(document, source, where, entry.locality, entry.base_url)
        if entry.proxy is None and entry.proxy_locality is not None:
            problems.append(
                f"{source}:{_line_of(document, (*where, 'proxy_locality'))}: "
                f"llms[{index}].proxy_locality: set, but there is no proxy; add proxy: or "
                "remove proxy_locality"
            )
        if (
            entry.proxy is not None
            and entry.proxy_locality is None
            and default_locality(entry.proxy) is None
        ):
            problems.append(
                f"{source}:{_line_of(document, (*where, 'proxy'))}: "
                f"llms[{index}].proxy_locality: required because the proxy "
                f"{_without_credentials(entry.proxy)} is not a local address; set on_prem, "
                "free_cloud or paid_cloud"
            )
        if entry.provider_name in seen:
            problems.append(
                f"{source}:{_line_of(document, (*where, 'provider_name'))}: "
                f"llms[{index}].provider_name: {entry.provider_name!r} is used twice; "
                "names must be unique"
            )
        seen.add(entry.provider_name)
        if entry.template is not None and entry.type == "anthropic":
            problems.append(
                f"{source}:{_line_of(document, (*where, 'template'))}: llms[{index}].template: "
                "template mode needs type openai or ollama; the Anthropic API has no raw "
                "completion endpoint"
            )
    for key in ("default_llm", "title_llm"):
        value = getattr(config, key)
        if value is not None and value not in seen:
            hint = _did_you_mean(value, sorted(seen))
            problems.append(
                f"{source}:{_line_of(document, (key,))}: {key}: "
                f"{value!r} is not the provider_name of any llms entry{hint}"
            )
    _check_tts(config, document, source, problems)


def _locality_problems(
    document: CommentedMap,
    source: str,
    where: tuple[str, int],
    locality: Locality | None,
    base_url: str,
) -> list[str]:
    """The entry at ``where`` (an llms or tts entry) must declare where a server that is
    not on a local address runs."""
    if locality is not None or default_locality(base_url) is not None:
        return []
    section, index = where
    return [
        f"{source}:{_line_of(document, (*where, 'base_url'))}: {section}[{index}].locality: "
        f"required because {base_url} is not a local address; "
        "set on_prem, free_cloud or paid_cloud"
    ]


def _check_tts(config: Config, document: CommentedMap, source: str, problems: list[str]) -> None:
    """The tts entries: a server for each HTTP engine, localities, unique names."""
    seen: set[str] = set()
    for index, entry in enumerate(config.tts):
        where = ("tts", index)

        def problem(
            key: str, text: str, where: tuple[str, int] = where, index: int = index
        ) -> None:
            problems.append(f"{source}:{_line_of(document, (*where, key))}: tts[{index}].{text}")

        if entry.type == "system":
            for key in ("base_url", "api_key", "model", "format", "locality"):
                if getattr(entry, key) is not None:
                    problem(key, f"{key}: system voices have no server; remove {key}")
        elif entry.base_url is None:
            problem("type", f"base_url: required for an {entry.type} engine (its server's URL)")
        else:
            problems.extend(
                _locality_problems(document, source, where, entry.locality, entry.base_url)
            )
        if entry.type == "xtts" and entry.format not in (None, "wav"):
            problem("format", "format: XTTS API servers answer wav only; write format: wav")
        if entry.name in seen:
            problem("name", f"name: {entry.name!r} is used twice; names must be unique")
        seen.add(entry.name)
    if config.default_tts is not None and config.default_tts not in seen:
        hint = _did_you_mean(config.default_tts, sorted(seen))
        problems.append(
            f"{source}:{_line_of(document, ('default_tts',))}: default_tts: "
            f"{config.default_tts!r} is not the name of any tts entry{hint}"
        )


def _line_of(document: CommentedMap, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest part of ``loc`` that exists in the YAML document."""
    line = 1
    node: Any = document
    for part in loc:
        in_map = isinstance(node, CommentedMap) and part in node
        in_list = isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node)
        if not (in_map or in_list):
            break
        # A key merged in with "<<:", or an entry of an !!omap, has no position of its own.
        position = (node.lc.data or {}).get(part)
        if position is not None:
            line = position[0] + 1
        node = node[part]
    return line


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part)
            plain = name.isprintable() and name == name.strip() and name != ""
            text += ("." if text else "") + (name if plain else repr(name))
    return text or "(top level)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields allowed at the mapping that ``loc`` points into."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        candidates = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)


def _explain(item: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(loc)
        hint = _did_you_mean(str(loc[-1]), allowed)
        return f"unknown setting{hint}; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return "required, but missing"
    if kind == "enum" or kind == "literal_error":
        expected = item.get("ctx", {}).get("expected", "")
        return f"{item['input']!r} is not allowed; use one of {expected}"
    message = str(item["msg"])
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return message


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# --- the example file -----------------------------------------------------------------------

_EXAMPLE_ENTRIES: list[dict[str, Any]] = [
    {
        "provider_name": "local-llama",
        "type": "openai",
        "base_url": "http://127.0.0.1:8080/v1",
        "model_name": "local-model",
        "context_size": 8192,
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": None,
        "template": None,
        "vision": None,
        "api_key": None,
        "locality": "on_prem",
        "timeout": 60.0,
        "max_retries": 2,
        "stream_idle_timeout": 60.0,
        "proxy": None,
        "proxy_locality": None,
        "embedding_model": None,
    },
    {
        "provider_name": "ollama",
        "type": "ollama",
        "base_url": "http://127.0.0.1:11434",
        "model_name": "llama3.2",
        "embedding_model": "nomic-embed-text",
    },
    {
        "provider_name": "openai",
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "model_name": "gpt-4o-mini",
        "context_size": 128000,
        "api_key": "${OPENAI_API_KEY:-}",
        "locality": "paid_cloud",
    },
]

_EXAMPLE_TTS: list[dict[str, Any]] = [
    {
        "type": "openai",
        "name": "kokoro",
        "base_url": "http://127.0.0.1:8880/v1",
        "api_key": None,
        "model": "kokoro",
        "voice": "af_heart",
        "speed": 1.0,
        "format": "mp3",
        "language": "en",
        "locality": "on_prem",
        "timeout": 60.0,
    },
    {"type": "system", "name": "system-voice"},
    {
        "type": "xtts",
        "name": "xtts",
        "base_url": "http://127.0.0.1:8020",
        "voice": "female",
        "language": "en",
    },
]


def _comment_block(text: str, indent: str) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        if len(indent) + 2 + len(current) + len(word) + 1 > 96:
            lines.append(f"{indent}# {current.rstrip()}")
            current = ""
        current += word + " "
    if current:
        lines.append(f"{indent}# {current.rstrip()}")
    return lines


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text.startswith("${") or ":" in text or text.startswith(("{", "[", "*", "&", "!")):
        return f'"{text}"'
    return text


def render_example() -> str:
    """The text of ``.config.yml.example``, generated from the schema's descriptions."""
    out = [
        "# Hushchat configuration: an example documenting every setting.",
        "# Copy it to the config file (`hushchat config path` prints where that is),",
        "# or point --config / HUSHCHAT_CONFIG at it. ${VAR} and ${VAR:-default} are",
        "# replaced from the environment. This file is generated from the schema in",
        "# app/config.py: run `hushchat config example > .config.yml.example` after a change.",
        "",
    ]
    fields = Config.model_fields
    out += _comment_block(fields["default_llm"].description or "", "")
    out.append("default_llm: local-llama")
    out.append("")
    out += _comment_block(fields["title_llm"].description or "", "")
    out.append("title_llm: null")
    out.append("")
    out += _comment_block(fields["llms"].description or "", "")
    out.append("llms:")
    out += _example_entries(LLMEntry, _EXAMPLE_ENTRIES)
    out += _comment_block(fields["logging"].description or "", "")
    out.append("logging:")
    for name, field in LoggingSettings.model_fields.items():
        out += _comment_block(field.description or "", "  ")
        out.append(f"  {name}: {_yaml_scalar(field.default)}")
    out.append("")
    sections: tuple[tuple[str, type[BaseModel]], ...] = (
        ("ui", UISettings),
        ("updates", UpdateSettings),
        ("attachments", AttachmentSettings),
    )
    for section, model in sections:
        out += _comment_block(fields[section].description or "", "")
        out.append(f"{section}:")
        for name, field in model.model_fields.items():
            out += _comment_block(field.description or "", "  ")
            out.append(f"  {name}: {_yaml_scalar(field.default)}")
        out.append("")
    out += _comment_block(fields["default_tts"].description or "", "")
    out.append("default_tts: null")
    out.append("")
    out += _comment_block(fields["tts"].description or "", "")
    out.append("tts:")
    out += _example_entries(TTSEntry, _EXAMPLE_TTS)
    return "\n".join(out[:-1]) + "\n"


def _example_entries(model: type[BaseModel], samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines of a list of example entries, the first one with each field's comment."""
    out: list[str] = []
    for number, sample in enumerate(samples):
        first = True
        for name, field in model.model_fields.items():
            if name not in sample:
                continue
            if number == 0:
                out += _comment_block(field.description or "", "  " if first else "    ")
            prefix = "  - " if first else "    "
            first = False
            out.append(f"{prefix}{name}: {_yaml_scalar(sample[name])}")
        out.append("")
    return out
