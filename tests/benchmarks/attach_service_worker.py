"""A subprocess that sends one large text attachment through ``ChatService``.

``python -m tests.benchmarks.attach_service_worker DATABASE KEY_HEX SOURCE`` opens the
encrypted chat database, creates a chat, then sends a question with SOURCE attached
(checked and read, stored with the message in one transaction, its excerpts ranked for
the question, the turn answered by a scripted provider). It prints
``SENT <seconds> <peak RSS bytes above baseline> <tracemalloc peak bytes>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.chat.attachments import NewAttachment
from app.chat.service import ChatService
from app.config import LoadedConfig, parse_config
from app.store.library import Library
from app.vault.database import open_database
from providers import ChatRequest, FinishEvent, ProviderSpec, TextDelta
from tests.peers.scripted_provider import ScriptedProvider
from tests.unit.store.attachment_worker import PeakMemory

CONFIG = """
default_llm: local
llms:
  - {provider_name: local, type: openai, base_url: 'http://127.0.0.1:1/v1', model_name: m,
     context_size: 32768}
"""


async def _answer(_request: ChatRequest) -> AsyncIterator[Any]:
    yield TextDelta("ok")
    yield FinishEvent("stop")


def _factory(spec: ProviderSpec) -> Any:
    return ScriptedProvider(spec, _answer)


async def _send(service: ChatService, source: Path) -> None:
    chat = await service.create_chat()
    turn = service.send(
        chat.id, "what is the launch code?", attachments=[NewAttachment.from_path(source)]
    )
    async with contextlib.aclosing(turn):
        async for _event in turn:
            pass


def main(database: str, key_hex: str, source: str) -> None:
    conn = open_database(Path(database), bytes.fromhex(key_hex))
    library = Library(conn)
    config = parse_config(CONFIG, "bench", {}, lambda: ["openai"])
    service = ChatService(library, LoadedConfig(config, None, {}), provider_factory=_factory)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    with PeakMemory() as memory:
        asyncio.run(_send(service, Path(source)))
    elapsed = time.perf_counter() - started
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"SENT {elapsed:.3f} {memory.above_baseline} {traced}", flush=True)
    service.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
