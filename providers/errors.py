"""The one exception tree of the provider layer.

Every failure a provider can meet is one of these, each with a message a person
can act on (what went wrong, and what to do about it)::

    ProviderError
    ├── AuthError               401/403: API key missing, wrong or not allowed
    ├── RateLimitedError        429 (and 503 with Retry-After): carries retry_after seconds
    ├── ContextTooLongError     the prompt does not fit the model's context window
    ├── ConnectionFailedError   refused, DNS, TLS, or the stream cut mid-answer
    ├── ProviderTimeoutError    connect or read timeout
    ├── ProtocolError           the server answered something that is not the wire format
    ├── ServerError             any other 4xx/5xx answer from the server
    └── ProviderConfigError     the entry cannot work as configured (also a ValueError)
        ├── UnknownProviderTypeError   ``type`` names no registered provider type
        ├── PromptTemplateError        the ``template`` does not compile or render
        └── ImagesNotSupportedError    images sent to a model not known to accept them
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every provider failure.

    ``provider`` names the configured provider entry, ``status`` is the HTTP
    status when there was one. ``str(error)`` is a complete sentence for a user.
    """

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __str__(self) -> str:
        if self.provider:
            return f"{self.provider}: {self.message}"
        return self.message


class AuthError(ProviderError):
    """The server refused our credentials (HTTP 401 or 403)."""


class RateLimitedError(ProviderError):
    """The server asked us to slow down; ``retry_after`` is in seconds when known."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class ContextTooLongError(ProviderError):
    """The request does not fit in the model's context window."""


class ConnectionFailedError(ProviderError):
    """No connection could be made, or it broke before the answer was complete."""


class ProviderTimeoutError(ProviderError):
    """The server did not answer (connect) or stopped sending (read) in time."""


class ProtocolError(ProviderError):
    """The server's answer does not follow the wire format we speak with it."""


class ServerError(ProviderError):
    """Any other error answer from the server (typically HTTP 5xx)."""


class ProviderConfigError(ProviderError, ValueError):
    """The provider entry cannot work as configured; fix the configuration, not the server."""


class UnknownProviderTypeError(ProviderConfigError):
    """``spec.type`` names no provider type registered in the ``hushchat.providers`` group.

    ``known`` lists the registered type names, sorted.
    """

    def __init__(self, message: str, *, provider: str = "", known: list[str] | None = None) -> None:
        super().__init__(message, provider=provider)
        self.known = sorted(known or [])


class PromptTemplateError(ProviderConfigError):
    """The entry's Jinja ``template`` has a syntax error or uses something undefined.

    ``line`` is the 1-based template line when known.
    """

    def __init__(self, message: str, *, provider: str = "", line: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.line = line


class ImagesNotSupportedError(ProviderConfigError):
    """A request carries images but the entry's model is not known to accept them.

    Raised before anything is sent. ``model`` is the model asked for; the message
    names vision models and the ``vision: true`` override.
    """

    def __init__(self, message: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(message, provider=provider)
        self.model = model
