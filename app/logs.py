"""Logging, configured once at start-up: human-readable or JSON lines on stderr.

Every record passes ``RedactingFilter``, which removes API keys, bearer tokens,
``Authorization``/``x-api-key`` headers, JWTs and any secret registered with
``register_secret`` (for example API keys read from the environment) from the
message and from exception text. Message content is never logged by the app at
any level; this filter is the safety net for what a library might print.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import TextIO

REDACTED = "[REDACTED]"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization: Bearer <token> / Basic <token>, in headers, reprs and JSON
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"),
    # OpenAI / Anthropic / OpenRouter style keys
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    # JSON Web Tokens
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
)
# name=value, name: value, "name": "value" for secret-looking names
_KEY_VALUE = re.compile(
    r"""(?ix)
    (?P<name>["']?(?:api[_-]?key|x-api-key|authorization|access[_-]?token|refresh[_-]?token
        |id[_-]?token|token|password|passphrase|secret|client[_-]?secret)["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<quote>["']?)
    (?P<value>(?!\[REDACTED\]|(?i:bearer|basic)\b)[^\s"',}\]]+)
    """
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Make sure ``value`` (an API key, a token) never appears in a log line."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret shape and registered secret replaced."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) + " " + REDACTED) if m.lastindex else REDACTED, text
        )
    return _KEY_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and exception text with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so configuring again replaces it."""


def configure_logging(
    level: str | int = "WARNING", fmt: str = "human", stream: TextIO | None = None
) -> logging.Handler:
    """Install the app's one log handler on the root logger (replacing an earlier one)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _OurHandler):
            root.removeHandler(handler)
    handler = _OurHandler(stream or sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter  # only for JSON lines: start-up time

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request line at INFO; keep it to warnings unless debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # markdown-it traces every block rule of every render at DEBUG: noise, and slow.
    logging.getLogger("markdown_it").setLevel(logging.WARNING)
    return handler
