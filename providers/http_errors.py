"""Turning HTTP answers and transport failures into the provider error tree.

One place decides which ``ProviderError`` a failure becomes and words its
message so a person can act on it: what went wrong, with which server, and
what to do. Text the server sent is passed through ``Redactor`` (so an API key
it echoes never reaches a message) and shortened.
"""

from __future__ import annotations

import email.utils
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from providers.errors import (
    AuthError,
    ConnectionFailedError,
    ContextTooLongError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
)

# Error answers are short; more than this is not an error message worth showing.
MAX_ERROR_BODY_BYTES = 64 * 1024
_MAX_MESSAGE_CHARS = 300

_CONTEXT_TOO_LONG = re.compile(
    r"context (length|window|size)|prompt is too long|exceed_context_size|too many tokens",
    re.IGNORECASE,
)
_CONTEXT_TOO_LONG_MARKERS = frozenset(
    {"exceed_context_size_error", "context_length_exceeded", "string_above_max_length"}
)
# Error ``type`` names (Anthropic, OpenAI-style servers) that say what an HTTP
# status would, for errors that arrive inside a stream without one.
_STATUS_BY_ERROR_TYPE = {
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "not_found_error": 404,
    "overloaded_error": 529,
    "invalid_request_error": 400,
    "api_error": 500,
    "server_error": 500,
}
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|cookie|session", re.IGNORECASE)


class Redactor:
    """Replaces known secrets (the API key, sensitive header values) in text with ``***``."""

    def __init__(self, secrets: list[str]) -> None:
        """Remember ``secrets``; values shorter than 4 characters are ignored."""
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def for_headers(
        cls, api_key: str | None, headers: dict[str, str], *, proxy: str | None = None
    ) -> Redactor:
        """A redactor for ``api_key``, the values of headers whose names look secret and
        the credentials in a ``proxy`` URL."""
        secrets = [value for name, value in headers.items() if _SENSITIVE_HEADER.search(name)]
        if api_key:
            secrets.append(api_key)
        if proxy:
            try:
                parts = urlsplit(proxy)
                secrets += [parts.username or "", parts.password or ""]
            except ValueError:  # not a URL: nothing to take out of it
                pass
        return cls(secrets)

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to show and log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not even parseable: show no part of it that could hold a secret
        return "(malformed URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a huge zone or hour
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite
        return None
    return max(0.0, seconds)


@dataclass(slots=True)
class ErrorDetails:
    """What an error body (or an in-stream error event) says, whatever its dialect."""

    message: str = ""
    type: str = ""
    code: str = ""
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def error_details(payload: Any) -> ErrorDetails:
    """Pull message, type and code out of an error body in any dialect we speak.

    Understands ``{"error": {"message", "type", "code"}}`` (OpenAI, llama.cpp,
    vLLM, LM Studio, OpenRouter), ``{"type": "error", "error": {...}}``
    (Anthropic), ``{"error": "text"}`` (Ollama) and ``{"detail": ...}``.
    """
    if not isinstance(payload, dict):
        return ErrorDetails(message=str(payload) if isinstance(payload, str) else "")
    error = payload.get("error", payload.get("detail"))
    if isinstance(error, str):
        return ErrorDetails(message=error)
    if not isinstance(error, dict):
        message = payload.get("message")
        return ErrorDetails(message=message if isinstance(message, str) else "")
    code = error.get("code")
    return ErrorDetails(
        message=str(error.get("message") or ""),
        type=str(error.get("type") or ""),
        code=code if isinstance(code, str) else "",
        status=code if isinstance(code, int) and 100 <= code <= 599 else None,
        extra={k: v for k, v in error.items() if k not in {"message", "type", "code"}},
    )


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Who is failing, for messages: the entry's name, its server kind and URL."""

    provider: str
    server: str  # e.g. "Ollama server", for "could not connect to the Ollama server at …"
    base_url: str
    timeout: float
    has_api_key: bool
    redact: Redactor
    not_found_hint: str = "check `base_url` and the model name"
    proxy: str | None = None  # the proxy the entry names, if any


def _server_text(details: ErrorDetails, context: ErrorContext) -> str:
    text = " ".join(context.redact(details.message).split())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return f": {text}" if text else ""


def is_context_too_long(details: ErrorDetails) -> bool:
    """True when the error says the prompt does not fit the model's context window."""
    if details.type in _CONTEXT_TOO_LONG_MARKERS or details.code in _CONTEXT_TOO_LONG_MARKERS:
        return True
    return bool(_CONTEXT_TOO_LONG.search(details.message))


def is_quota_exhausted(details: ErrorDetails) -> bool:
    """True for OpenAI's "no quota left" 429, which waiting does not cure."""
    return details.code == "insufficient_quota" or details.type == "insufficient_quota"


def classify(
    status: int | None,
    details: ErrorDetails,
    context: ErrorContext,
    *,
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` for an HTTP error answer or an in-stream error event.

    ``status`` is the HTTP status, or ``None`` for an error inside a stream (its
    ``type``/``code`` then stand in for the status).
    """
    effective = status
    if effective is None:
        effective = details.status or _STATUS_BY_ERROR_TYPE.get(details.type)
        effective = effective or _STATUS_BY_ERROR_TYPE.get(details.code)
    said = _server_text(details, context)
    where = f"HTTP {effective}" if effective is not None else "error in the stream"
    name = context.provider

    if effective in (401, 403) or details.code == "invalid_api_key":
        if effective == 403:
            return AuthError(
                f"the {context.server} refused access ({where}{said}). Check that the API key "
                "may use this model and endpoint.",
                provider=name,
                status=status,
            )
        if not context.has_api_key:
            action = "This server needs an API key: set `api_key` for this entry."
        else:
            action = (
                "Check `api_key` for this entry (the environment variable or keychain entry "
                "it comes from)."
            )
        return AuthError(
            f"the {context.server} rejected the API key ({where}{said}). {action}",
            provider=name,
            status=status,
        )
    if is_quota_exhausted(details):
        return ServerError(
            f"the account has no quota left ({where}{said}). Check its plan and billing.",
            provider=name,
            status=status,
        )
    if effective == 429 or (effective == 503 and retry_after is not None):
        when = (
            f"try again in {retry_after:.0f} s" if retry_after is not None else "try again shortly"
        )
        return RateLimitedError(
            f"the {context.server} is rate limiting requests ({where}{said}); {when}.",
            provider=name,
            status=status if status is not None else effective,
            retry_after=retry_after,
        )
    if is_context_too_long(details):
        limit = details.extra.get("n_ctx")
        size = f" of {limit} tokens" if isinstance(limit, int) else ""
        return ContextTooLongError(
            f"the conversation does not fit the model's context window{size} ({where}{said}). "
            "Shorten or split the chat, start a new one, or use a larger context size.",
            provider=name,
            status=status,
        )
    if effective == 404:
        return ServerError(
            f"the {context.server} at {display_url(context.base_url)} has no such endpoint or "
            f"model ({where}{said}); {context.not_found_hint}.",
            provider=name,
            status=status,
        )
    if effective is not None and 300 <= effective < 400:
        return ServerError(
            f"the {context.server} redirected the request ({where}); set `base_url` to the "
            "address it redirects to.",
            provider=name,
            status=status,
        )
    if effective is not None and 400 <= effective < 500:
        return ServerError(
            f"the {context.server} rejected the request ({where}{said}). Check the model name "
            "and the request's options.",
            provider=name,
            status=status,
        )
    return ServerError(
        f"the {context.server} failed ({where}{said}). Try again; if it keeps failing, "
        "check the server's logs.",
        provider=name,
        status=status,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_tls_failure(exc: BaseException) -> bool:
    """True when a connect error comes from TLS (retrying will not help)."""
    return any(isinstance(e, ssl.SSLError) for e in _causes(exc)) or "SSL" in str(exc)


def _is_dns_failure(exc: BaseException) -> bool:
    if any(isinstance(e, socket.gaierror) for e in _causes(exc)):
        return True
    text = str(exc).lower()
    return any(
        marker in text
        for marker in ("name or service not known", "nodename nor servname", "getaddrinfo failed")
    )


def from_transport_error(
    exc: httpx.HTTPError, context: ErrorContext, *, mid_answer: bool = False
) -> ProviderError:
    """The ``ProviderError`` for an httpx failure to connect, send or receive.

    ``mid_answer`` says whether part of the answer had already been delivered.
    """
    url = display_url(context.base_url)
    name = context.provider
    detail = context.redact(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderTimeoutError(
            f"could not connect to the {context.server} at {url} within {context.timeout:g} s. "
            "Check that it is running and reachable, or raise `timeout` for this entry.",
            provider=name,
        )
    if isinstance(exc, httpx.TimeoutException):
        during = "mid-answer" if mid_answer else "after the request was sent"
        return ProviderTimeoutError(
            f"the {context.server} at {url} sent nothing for {context.timeout:g} s {during}. "
            "The model may still be loading or the server is overloaded; try again, or raise "
            "`timeout` for this entry.",
            provider=name,
        )
    if isinstance(exc, httpx.ProxyError):
        which = (
            f"the proxy at {display_url(context.proxy)} (the entry's `proxy`)"
            if context.proxy is not None
            else "the proxy set in the environment (HTTPS_PROXY, ALL_PROXY) or the system"
        )
        return ConnectionFailedError(
            f"{which} failed on the way to the {context.server} at {url} ({detail}). Check "
            "that the proxy is running and allows the connection.",
            provider=name,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ProviderConfigError(
            f"`base_url` {url!r} is not a usable http:// or https:// URL ({detail}).",
            provider=name,
        )
    if isinstance(exc, httpx.ConnectError):
        host = urlsplit(display_url(context.base_url)).hostname or url
        if is_tls_failure(exc):
            return ConnectionFailedError(
                f"the TLS handshake with {host} failed ({detail}). Check the URL scheme "
                "(http:// or https://) and the server's certificate.",
                provider=name,
            )
        if _is_dns_failure(exc):
            return ConnectionFailedError(
                f"could not resolve the host {host!r} ({detail}). Check `base_url` and the "
                "network connection.",
                provider=name,
            )
        if context.proxy is not None:
            return ConnectionFailedError(
                f"could not connect to the {context.server} at {url} through the proxy at "
                f"{display_url(context.proxy)} ({detail}). Check that the proxy is running and "
                "that `proxy` and `base_url` are right.",
                provider=name,
            )
        return ConnectionFailedError(
            f"could not connect to the {context.server} at {url} ({detail}). Check that it is "
            "running and that `base_url` is right.",
            provider=name,
        )
    if mid_answer:
        return ConnectionFailedError(
            f"the connection to the {context.server} at {url} broke mid-answer ({detail}); "
            "the answer is incomplete. Try again; if it keeps happening, check the server.",
            provider=name,
        )
    return ConnectionFailedError(
        f"the connection to the {context.server} at {url} failed ({detail}). Try again; if it "
        "keeps happening, check the server and the network.",
        provider=name,
    )


def stream_cut(context: ErrorContext) -> ConnectionFailedError:
    """The error for a stream that ended without its end marker (the answer is incomplete)."""
    return ConnectionFailedError(
        f"the {context.server} at {display_url(context.base_url)} ended the stream before the "
        "answer was complete (no end marker); the answer is incomplete. Try again; if it keeps "
        "happening, check the server's logs.",
        provider=context.provider,
    )


def stream_idle(context: ErrorContext, idle: float, *, mid_answer: bool) -> ProviderTimeoutError:
    """The error for a stream that stayed open but sent no content for ``idle`` seconds."""
    where = "mid-answer" if mid_answer else "before the first words"
    return ProviderTimeoutError(
        f"the {context.server} at {display_url(context.base_url)} stopped sending the answer: "
        f"nothing of it arrived for {idle:g} s ({where}), though the connection stayed open. "
        "The server may have stopped or hung; try again, and check the server. If its answers "
        "really pause this long, raise `stream_idle_timeout` for this entry.",
        provider=context.provider,
    )
