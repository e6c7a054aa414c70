"""``ProviderSpec``: what a provider entry says about one LLM server and model.

The desktop app's ``.config.yml`` schema maps its ``llms`` entries onto this
model; third parties can build one directly.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Locality(StrEnum):
    """Where a provider runs, which decides the privacy tiers it may serve."""

    ON_PREM = "on_prem"
    FREE_CLOUD = "free_cloud"
    PAID_CLOUD = "paid_cloud"


def is_local_url(url: str) -> bool:
    """True when ``url`` points at loopback, a private network or a ``.local`` name."""
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".lan", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def default_locality(url: str) -> Locality | None:
    """``ON_PREM`` for local URLs; ``None`` (the entry must declare it) for anything else."""
    return Locality.ON_PREM if is_local_url(url) else None


class ProviderSpec(BaseModel):
    """One configured provider: a server, a model, and how to talk to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, description="Unique name of this entry.")]
    type: Annotated[
        str, Field(description="Provider type: openai, ollama, anthropic or a plug-in type.")
    ]
    base_url: Annotated[str, Field(description="Base URL of the server's API.")]
    model: Annotated[str, Field(description="Model name sent to the server.")]
    locality: Locality = Locality.ON_PREM
    context_size: Annotated[
        int, Field(gt=0, description="Context window of the model, in tokens.")
    ] = 4096
    template: Annotated[
        str | None,
        Field(description="Jinja template: when set, send one raw prompt (template mode)."),
    ] = None
    vision: Annotated[
        bool | None,
        Field(
            description=(
                "Whether the model accepts images: true or false overrides the known list "
                "of vision models (providers.vision); None: decide by that list."
            )
        ),
    ] = None
    api_key: SecretStr | None = None
    timeout: Annotated[
        float, Field(gt=0, description="Seconds to wait for a connection or the next chunk.")
    ] = 60.0
    max_retries: Annotated[
        int, Field(ge=0, le=10, description="Retries for safe failures before the first token.")
    ] = 2
    stream_idle_timeout: Annotated[
        float,
        Field(
            gt=0,
            description=(
                "Seconds a streamed answer may go without content (text, reasoning, usage or "
                "its end) before it fails; keep-alives do not count."
            ),
        ),
    ] = 60.0
    proxy: Annotated[
        str | None,
        Field(
            repr=False,  # it may carry proxy credentials
            description=(
                "http:// or https:// URL of a proxy to reach the server through. When unset, "
                "on-prem entries connect directly and ignore any environment or system proxy; "
                "others use the environment's or system's proxy settings."
            ),
        ),
    ] = None
    headers: dict[str, str] = Field(default_factory=dict)
