"""``context_length`` against the real llama-server: its ``/props`` says the ``n_ctx`` it runs.

The server runs the tiny model with ``--ctx-size 512``; an entry configured for 4096 must
learn 512 (issue 12, item 7: detection had left the configured 4096).
"""

from __future__ import annotations

import pytest

from providers import ProviderSpec, create_provider
from providers.base import context_length
from tests.peers.llama_server import LlamaServer

pytestmark = pytest.mark.llama_server


async def test_llama_server_reports_its_n_ctx_over_the_configured_size(
    llama_server: LlamaServer,
) -> None:
    spec = ProviderSpec(
        name="llama-test",
        type="openai",
        base_url=f"{llama_server.base_url}/v1",
        model=llama_server.model,
        context_size=4096,
        timeout=10.0,
        max_retries=0,
    )
    async with create_provider(spec) as provider:
        assert await context_length(provider) == llama_server.context_size == 512
