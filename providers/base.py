"""The ``Provider`` contract, and ``HTTPProvider``, the shared machinery of the built-in types.

``Provider`` is what the rest of Hushchat (and any third-party type) relies
on. ``HTTPProvider`` owns one ``httpx.AsyncClient`` per provider and does what
every wire format needs: auth headers, sending with safe retries, mapping
failures to the error tree, closing the HTTP response whenever the event
stream stops (finished, failed, closed by the caller or cancelled), ending a
stream that sends nothing but keep-alives, and choosing the route to the
server: an on-prem server is always reached directly (never through an
environment or system proxy), a proxy only when the entry names one.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import httpx

from providers.errors import ProtocolError, ProviderConfigError, ProviderError
from providers.http_errors import (
    MAX_ERROR_BODY_BYTES,
    ErrorContext,
    ErrorDetails,
    Redactor,
    classify,
    display_url,
    error_details,
    from_transport_error,
    is_quota_exhausted,
    is_tls_failure,
    parse_retry_after,
    stream_cut,
    stream_idle,
)
from providers.retry import RetryPolicy
from providers.spec import Locality, ProviderSpec, is_local_url
from providers.streams import decode_json
from providers.types import ChatEvent, ChatMessage, ChatRequest, ImageInput, ModelInfo, Role
from providers.vision import require_images_accepted

logger = logging.getLogger(__name__)

#: The longest a metadata question (``HTTPProvider.probe_json``) may take, in seconds.
PROBE_SECONDS = 5.0


@runtime_checkable
class Provider(Protocol):
    """One configured LLM server and model, able to stream chat answers.

    Use it as an async context manager (or call ``aclose``) so its HTTP
    connections are released.
    """

    spec: ProviderSpec

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """Stream the answer to ``request`` as events.

        A complete answer ends with exactly one ``FinishEvent``, preceded by a
        ``UsageEvent`` when the server reports token counts. Failures raise a
        ``ProviderError``; a stream that breaks mid-answer raises
        ``ConnectionFailedError`` after the events already delivered. Closing
        the iterator (``aclose``) or cancelling its task closes the HTTP stream.
        """
        ...

    async def list_models(self) -> list[ModelInfo]:
        """The models the server offers."""
        ...

    async def aclose(self) -> None:
        """Release the provider's connections; it cannot be used afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class SupportsContextLength(Protocol):
    """A provider that can say the context window its server gives a model.

    The built-in types do (``HTTPProvider.context_length``); it is a protocol of its own
    rather than a method of ``Provider`` so that types written before 0.2.0 still load.
    Ask through :func:`context_length`, which answers None for those.
    """

    async def context_length(self, model: str | None = None) -> int | None:
        """The context window, in tokens, the server gives ``model`` (None: the spec's).

        None when the server does not say (or cannot be asked): the caller then uses
        the configured ``context_size``. Never raises for a server that does not know
        the question; a server that cannot be reached answers None too.
        """
        ...


async def context_length(provider: object, model: str | None = None) -> int | None:
    """``provider.context_length(model)`` if the type can say, else None."""
    if not isinstance(provider, SupportsContextLength):
        return None
    return await provider.context_length(model)


class Progress:
    """What a parser yields when content arrived that it delivers later (a finish reason
    or token counts held until the stream's end marker). It resets the stream's idle
    clock and is not passed on; use the one instance, ``PROGRESS``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PROGRESS"


PROGRESS = Progress()

EventParser = Callable[[httpx.Response], AsyncGenerator[ChatEvent | Progress, None]]


@dataclass(frozen=True, slots=True)
class WireCall:
    """One streamed POST: where to, what JSON body, and how to read its answer."""

    url: str
    body: dict[str, Any]
    parse: EventParser


@dataclass(frozen=True, slots=True)
class NetworkRoute:
    """How a provider reaches its server.

    ``proxy`` is the proxy the entry names (None: none named). ``trust_env`` says
    whether the environment's proxy variables (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``), the system's proxy settings (macOS, Windows) and
    ``.netrc`` apply.
    """

    proxy: str | None
    trust_env: bool


def network_route(spec: ProviderSpec) -> NetworkRoute:
    """The route to ``spec``'s server.

    An on-prem entry, or any entry whose ``base_url`` is a local address, never goes
    through a proxy it did not name: the prompt of a Private chat must not reach a
    proxy the user did not choose for it. An entry that names a proxy uses exactly
    that one. Other (cloud) entries follow the environment's and the system's proxy
    settings, which people behind corporate proxies need.
    """
    if spec.proxy is not None:
        return NetworkRoute(proxy=spec.proxy, trust_env=False)
    on_prem = spec.locality is Locality.ON_PREM or is_local_url(spec.base_url)
    return NetworkRoute(proxy=None, trust_env=not on_prem)


def fold_memory(system_prompt: str, memory: str) -> str:
    """The system prompt with the chat's memory appended under a ``Memory:`` heading.

    ``"<system prompt>\\n\\nMemory:\\n<memory>"``; either part may be empty.
    """
    if not memory.strip():
        return system_prompt
    block = f"Memory:\n{memory}"
    return f"{system_prompt}\n\n{block}" if system_prompt.strip() else block


def split_system(messages: list[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """The system messages' contents joined by a blank line, and the other messages."""
    system = "\n\n".join(m.content for m in messages if m.role is Role.SYSTEM and m.content)
    return system, [m for m in messages if m.role is not Role.SYSTEM]


def text_message(message: ChatMessage) -> dict[str, Any]:
    """``{"role": ..., "content": <text>}``: a message as every wire format takes plain text."""
    return {"role": message.role.value, "content": message.content}


def image_base64(image: ImageInput) -> str:
    """The image's bytes in standard base64 (done here, at the wire, not before)."""
    return base64.b64encode(image.data).decode("ascii")


def messages_with_memory(
    request: ChatRequest, wire_message: Callable[[ChatMessage], dict[str, Any]] = text_message
) -> list[dict[str, Any]]:
    """``request.messages`` as wire dicts, with ``request.memory`` folded into the system prompt.

    ``wire_message`` shapes each message (a type's image parts); system messages,
    which never carry images, are plain text. The first system message gets the
    memory; without one, a system message holding only the memory is put first.
    """
    wire = [wire_message(m) for m in request.messages]
    if not request.memory.strip():
        return wire
    for message in wire:
        if message["role"] == Role.SYSTEM.value:
            message["content"] = fold_memory(message["content"], request.memory)
            return wire
    return [{"role": Role.SYSTEM.value, "content": fold_memory("", request.memory)}, *wire]


def sampling_options(
    request: ChatRequest, *, max_tokens_field: str = "max_tokens"
) -> dict[str, Any]:
    """The request's sampling options that are set, under their wire names.

    ``max_tokens``, ``temperature``, ``top_p``, ``stop`` and ``seed`` keep their
    names (OpenAI's, which Ollama's ``options`` share) except the length limit,
    which is sent as ``max_tokens_field`` (Ollama calls it ``num_predict``).
    Options left unset are left out, so the server's defaults apply.
    """
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options[max_tokens_field] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.stop:
        options["stop"] = list(request.stop)
    if request.seed is not None:
        options["seed"] = request.seed
    return options


def positive_int(value: Any) -> int | None:
    """``value`` if it is a positive integer (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def normalise_finish_reason(raw: str | None) -> str:
    """Map a server's stop reason onto ``stop|length|content_filter|tool_calls|other``."""
    if raw in (None, "", "stop", "end_turn", "stop_sequence", "eos"):
        return "stop"
    if raw in ("length", "max_tokens", "model_context_window_exceeded"):
        return "length"
    if raw in ("content_filter", "refusal"):
        return "content_filter"
    if raw in ("tool_calls", "function_call", "tool_use"):
        return "tool_calls"
    return "other"


def _http_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as an http(s) address, or None when it can."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        return str(exc)
    if url.scheme in ("http", "https") and url.host:
        return None
    return "it needs http:// or https:// and a host"


class HTTPProvider(abc.ABC):
    """Base of the built-in provider types: one ``httpx.AsyncClient``, retries, error mapping.

    Subclasses say how a request goes on the wire (``chat_call``) and how models
    are listed (``list_models``). Provisional: its hooks may change in a minor
    release; the ``Provider`` protocol is the stable contract.
    """

    #: How this kind of server is named in error messages.
    server_label: ClassVar[str] = "server"
    #: What to suggest when the server answers 404.
    not_found_hint: ClassVar[str] = "check `base_url` and the model name"
    #: Statuses retried (before the first event only) when ``spec.max_retries`` allows.
    retry_statuses: ClassVar[frozenset[int]] = frozenset({429, 503})

    retry_policy: RetryPolicy = RetryPolicy()

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Set up the client for ``spec``; ``transport`` replaces the network (tests)."""
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self._check_base_url()
        api_key = spec.api_key.get_secret_value() if spec.api_key is not None else None
        headers = {**spec.headers, **self.auth_headers(api_key)}
        self._errors = ErrorContext(
            provider=spec.name,
            server=self.server_label,
            base_url=self.base_url,
            timeout=spec.timeout,
            has_api_key=bool(api_key),
            redact=Redactor.for_headers(api_key, headers, proxy=spec.proxy),
            not_found_hint=self.not_found_hint,
            proxy=spec.proxy,
        )
        self.route = network_route(spec)
        self._check_proxy()
        verify: ssl.SSLContext | bool = True
        if not self.route.trust_env and transport is None:
            # Not trusting the environment for proxies must not drop a private CA the
            # user named in SSL_CERT_FILE / SSL_CERT_DIR: read those here.
            verify = httpx.create_ssl_context(trust_env=True)
        self._client = httpx.AsyncClient(
            transport=transport,
            # ``transport`` replaces the network, the proxy included (tests).
            proxy=self.route.proxy if transport is None else None,
            trust_env=self.route.trust_env,
            verify=verify,
            headers=headers,
            timeout=httpx.Timeout(spec.timeout),
            # Never follow redirects: a redirected POST is not the same request,
            # and some auth headers (x-api-key) would go along to the new host.
            follow_redirects=False,
        )
        logger.debug(
            "provider %s: %s",
            spec.name,
            f"through the proxy at {display_url(self.route.proxy)}"
            if self.route.proxy
            else "with the environment's proxy settings"
            if self.route.trust_env
            else "direct, ignoring environment and system proxies",
        )

    def _check_base_url(self) -> None:
        """Refuse a ``base_url`` that cannot work, when the provider is created."""
        problem = _http_url_problem(self.base_url)
        if problem is None:
            return
        raise ProviderConfigError(
            f"`base_url` {display_url(self.base_url)!r} is not usable ({problem}); set it to the "
            "server's address, e.g. http://127.0.0.1:8080/v1.",
            provider=self.spec.name,
        )

    def _check_proxy(self) -> None:
        """Refuse a ``proxy`` that cannot work, when the provider is created."""
        if self.route.proxy is None:
            return
        problem = _http_url_problem(self.route.proxy)
        if problem is None:
            return
        raise ProviderConfigError(
            f"`proxy` {display_url(self.route.proxy)!r} is not usable ({problem}); set it to "
            "the proxy's address, e.g. http://proxy.example.lan:3128.",
            provider=self.spec.name,
        )

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers that carry ``api_key``; a bearer token unless a type overrides this."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @abc.abstractmethod
    def chat_call(self, request: ChatRequest) -> WireCall:
        """How ``request`` goes on the wire: URL, JSON body and the parser of the answer."""

    @abc.abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """The models the server offers."""

    async def context_length(self, model: str | None = None) -> int | None:
        """The context window the server gives ``model``; None unless a type knows how to ask."""
        return None

    async def probe_json(self, method: str, url: str, *, json: dict[str, Any] | None = None) -> Any:
        """One request for metadata (no retries) and its JSON body; None on any failure.

        For optional questions (the context window) that many servers do not answer:
        a 404, a refused connection, a body that is not JSON or an answer that takes longer
        than ``PROBE_SECONDS`` in all (a server that streams something else there) all
        mean "not said".
        """
        seconds = min(self.spec.timeout, PROBE_SECONDS)
        try:
            async with asyncio.timeout(seconds):
                response = await self._client.request(method, url, json=json, timeout=seconds)
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.debug("provider %s: %s failed: %s", self.spec.name, display_url(url), type(exc))
            return None
        if not response.is_success:
            logger.debug(
                "provider %s: %s %s -> %d",
                self.spec.name,
                method,
                display_url(url),
                response.status_code,
            )
            return None
        try:
            return response.json()
        except ValueError:
            logger.debug("provider %s: %s is not JSON", self.spec.name, display_url(url))
            return None

    def model_for(self, request: ChatRequest) -> str:
        """The model to ask for: the request's override, else the spec's."""
        return request.model or self.spec.model

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """Stream the answer to ``request``; see ``Provider.stream_chat``.

        Images for a model not known to accept them are refused here, before anything
        is sent (``providers.vision.require_images_accepted``).
        """
        require_images_accepted(request, self.spec)
        call = self.chat_call(request)
        response = await self.send("POST", call.url, json=call.body)
        delivered = 0
        try:
            async with aclosing(call.parse(response)) as events:
                while True:
                    # The parsers yield content only (deltas, usage, finish, or PROGRESS
                    # for content they deliver later) and read past keep-alives, each of
                    # which resets the HTTP read timeout; so waiting for the next event
                    # is what the idle timeout bounds. It covers only this wait, never
                    # the caller's work between events.
                    timer = asyncio.timeout(self.spec.stream_idle_timeout)
                    try:
                        async with timer:
                            event = await anext(events)
                    except StopAsyncIteration:
                        break
                    except TimeoutError as exc:
                        if not timer.expired():
                            raise
                        raise stream_idle(
                            self._errors, self.spec.stream_idle_timeout, mid_answer=delivered > 0
                        ) from exc
                    if isinstance(event, Progress):
                        continue
                    delivered += 1
                    yield event
        except httpx.DecodingError as exc:
            raise ProtocolError(
                f"the {self.server_label} sent a body that could not be decoded ({exc}).",
                provider=self.spec.name,
            ) from exc
        except httpx.TransportError as exc:
            raise from_transport_error(exc, self._errors, mid_answer=delivered > 0) from exc
        finally:
            await response.aclose()
            logger.debug("provider %s: stream closed after %d events", self.spec.name, delivered)

    async def send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request and return its open, successful (2xx) streaming response.

        Connect failures and ``retry_statuses`` answers are retried up to
        ``spec.max_retries`` times with ``retry_policy``; nothing has reached the
        caller yet, so this is always safe. Every other failure raises its
        ``ProviderError`` at once. The caller must ``aclose()`` the response.
        """
        attempt = 0
        while True:
            request = self._client.build_request(method, url, json=json, params=params)
            retry_after: float | None = None
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                error = from_transport_error(exc, self._errors)
                retryable = not is_tls_failure(exc)
                cause: BaseException | None = exc
            except httpx.HTTPError as exc:
                raise from_transport_error(exc, self._errors) from exc
            else:
                if response.is_success:
                    logger.debug(
                        "provider %s: %s %s -> %d",
                        self.spec.name,
                        method,
                        display_url(url),
                        response.status_code,
                    )
                    return response
                try:
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    details = await self._error_details(response)
                finally:
                    await response.aclose()
                error = classify(
                    response.status_code, details, self._errors, retry_after=retry_after
                )
                retryable = response.status_code in self.retry_statuses and not (
                    is_quota_exhausted(details)
                )
                cause = None
            delay = self._retry_delay(attempt, retry_after) if retryable else None
            if delay is None:
                raise error from cause
            logger.info(
                "provider %s: %s (%s); retry %d of %d in %.1f s",
                self.spec.name,
                type(error).__name__,
                error.status or "no answer",
                attempt + 1,
                self.spec.max_retries,
                delay,
            )
            await self.sleep(delay)
            attempt += 1

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float | None:
        if attempt >= self.spec.max_retries:
            return None
        return self.retry_policy.delay(attempt, retry_after)

    async def sleep(self, seconds: float) -> None:
        """Wait before a retry (a seam so tests need not wait)."""
        await asyncio.sleep(seconds)

    async def _error_details(self, response: httpx.Response) -> ErrorDetails:
        """What the error answer's body says; an unreadable body says nothing."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ERROR_BODY_BYTES:
                    break
        except httpx.HTTPError as exc:
            logger.debug("provider %s: error body unreadable: %s", self.spec.name, type(exc))
        text = b"".join(chunks)[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace")
        try:
            return error_details(decode_json(text, provider=self.spec.name, what="an error"))
        except ProtocolError:
            return ErrorDetails(message=text.strip())

    async def require_event_stream(self, response: httpx.Response) -> None:
        """Raise unless ``response`` is an event stream.

        Some servers and proxies answer a streaming request with a JSON error
        body and status 200; that becomes the error it describes. Anything else
        is a ``ProtocolError``.
        """
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" in content_type:
            return
        details = await self._error_details(response)
        if "json" in content_type and (details.message or details.type or details.code):
            raise classify(None, details, self._errors)
        raise ProtocolError(
            f"expected a streamed answer (text/event-stream) from the {self.server_label} but "
            f"got {content_type or 'no content type'!r}. Check that `type` and `base_url` match "
            "the server.",
            provider=self.spec.name,
        )

    def stream_error(self, payload: Any) -> ProviderError:
        """The error for an ``error`` object that arrived inside a stream."""
        return classify(None, error_details(payload), self._errors)

    def stream_cut(self) -> ProviderError:
        """The error for a stream that ended before its end marker."""
        return stream_cut(self._errors)

    def protocol_error(self, what: str) -> ProtocolError:
        """A ``ProtocolError`` saying the server sent ``what`` that breaks the wire format."""
        return ProtocolError(
            f"the {self.server_label} sent {what}, which is not its documented format. Check "
            "that `type` and `base_url` match the server.",
            provider=self.spec.name,
        )

    async def get_json(self, url: str, *, params: dict[str, str] | None = None) -> Any:
        """GET ``url`` (with retries as in ``send``) and return the parsed JSON body."""
        return await self.request_json("GET", url, what="a model list", params=params)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        """Send a request (retries and error mapping as in ``send``) and return its parsed
        JSON body; ``what`` names the answer in a ``ProtocolError``."""
        response = await self.send(method, url, params=params, json=json)
        try:
            body = await response.aread()
        except httpx.DecodingError as exc:
            raise self.protocol_error("a body that could not be decoded") from exc
        except httpx.TransportError as exc:
            raise from_transport_error(exc, self._errors) from exc
        finally:
            await response.aclose()
        text = body.decode(response.encoding or "utf-8", errors="replace")
        return decode_json(text, provider=self.spec.name, what=what)

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        """Enter ``async with``; the provider is closed on exit."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the provider."""
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.spec.name!r}, "
            f"base_url={display_url(self.base_url)!r}, model={self.spec.model!r})"
        )
