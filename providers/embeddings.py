"""Embeddings: an optional capability of a provider type (``SupportsEmbeddings``).

The OpenAI-compatible wire (``POST {base_url}/embeddings``, also llama-server's
``/v1/embeddings``) and Ollama (``POST {base_url}/api/embed``) have one; Anthropic has
none. Inputs go in batches of ``BATCH_SIZE`` per request; an HTTP failure raises the
provider's usual error (``send``), an answer that is not the documented shape raises
``ProtocolError``. Neither the texts nor the vectors are ever logged.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from providers.errors import ProviderConfigError

if TYPE_CHECKING:
    from providers.base import HTTPProvider

#: Texts per embeddings request.
BATCH_SIZE = 64


@runtime_checkable
class SupportsEmbeddings(Protocol):
    """A provider that can turn texts into embedding vectors."""

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """One vector per text, in order, from ``model`` (an embedding model)."""
        ...


async def post_json(provider: HTTPProvider, url: str, body: dict[str, Any], what: str) -> Any:
    """POST ``body`` to ``url`` (retries and error mapping as in ``send``); the JSON answer."""
    return await provider.request_json("POST", url, what=what, json=body)


async def in_batches(
    provider: HTTPProvider,
    texts: list[str],
    model: str,
    request: Callable[[list[str]], Awaitable[list[Any]]],
) -> list[list[float]]:
    """Embed ``texts`` ``BATCH_SIZE`` at a time with ``request`` (one batch -> raw vectors)."""
    if not model:
        raise ProviderConfigError(
            "no embedding model named; set `embedding_model` on this provider's entry",
            provider=provider.spec.name,
        )
    vectors: list[list[float]] = []
    for start in range(0, len(texts), BATCH_SIZE):
        batch = texts[start : start + BATCH_SIZE]
        raw = await request(batch)
        if len(raw) != len(batch):
            raise provider.protocol_error(
                f"{len(raw)} embeddings for {len(batch)} texts in an embeddings answer"
            )
        vectors.extend(vector_of(provider, item) for item in raw)
    dimensions = {len(v) for v in vectors}
    if len(dimensions) > 1:
        raise provider.protocol_error("embeddings of different lengths in one answer")
    return vectors


def vector_of(provider: HTTPProvider, value: Any) -> list[float]:
    """``value`` as a non-empty list of finite floats, or a ``ProtocolError``."""
    if not isinstance(value, list) or not value:
        raise provider.protocol_error("an embedding that is not a list of numbers")
    vector: list[float] = []
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise provider.protocol_error("an embedding that is not a list of numbers")
        if not math.isfinite(number):
            raise provider.protocol_error("an embedding holding a number that is not finite")
        vector.append(float(number))
    return vector
