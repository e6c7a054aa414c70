"""Provider overhead: ``providers`` versus raw httpx on the same llama-server stream.

Starts its own llama-server (``tests/peers``) with the tiny model and streams the same
Chat Completions request (same body, same seed, so the same tokens) alternately through
an ``openai`` provider and through a bare ``httpx.AsyncClient`` that reads the SSE lines
and parses each chunk's JSON. Per run it measures the time from sending the request to the
last text delta, and the process CPU time (``time.process_time``, all our threads) per
event. Reports medians over several runs and the provider/raw ratio of time to last token
against the budget (≤ 1.05x, shared DESIGN §8).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from providers import ChatMessage, ChatRequest, ProviderSpec, Role, TextDelta, create_provider
from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.peers.llama_server import LlamaServer, find_llama_server
from tests.peers.tiny_model import write_tiny_model

MAX_TOKENS = 1000
RUNS = 15
WARMUP_RUNS = 2
SEED = 11
SYSTEM = "You are a tiny test model."
QUESTION = "hello world"
TIME_TO_LAST_TOKEN_BUDGET = 1.05


@dataclass(frozen=True, slots=True)
class Sample:
    time_to_last_token: float  # seconds
    cpu_seconds: float
    events: int  # text deltas received


def _request() -> ChatRequest:
    return ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content=SYSTEM),
            ChatMessage(role=Role.USER, content=QUESTION),
        ],
        max_tokens=MAX_TOKENS,
        seed=SEED,
    )


def _raw_body(model: str) -> dict[str, Any]:
    """The body the ``openai`` provider sends for ``_request()``."""
    return {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": MAX_TOKENS,
        "seed": SEED,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
        ],
    }


async def _measure(stream: Callable[[], Awaitable[tuple[float, int]]]) -> Sample:
    cpu_started = time.process_time()
    started = time.perf_counter()
    last_token_at, events = await stream()
    cpu = time.process_time() - cpu_started
    return Sample(last_token_at - started, cpu, events)


async def _compare(server: LlamaServer) -> tuple[list[Sample], list[Sample]]:
    spec = ProviderSpec(
        name="bench",
        type="openai",
        base_url=f"{server.base_url}/v1",
        model=server.model,
        context_size=server.context_size,
        timeout=30.0,
        max_retries=0,
    )
    request = _request()
    url = f"{server.base_url}/v1/chat/completions"
    body = _raw_body(server.model)

    async with (
        create_provider(spec) as provider,
        httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client,
    ):

        async def through_provider() -> tuple[float, int]:
            last = 0.0
            events = 0
            async for event in provider.stream_chat(request):
                if isinstance(event, TextDelta):
                    last = time.perf_counter()
                    events += 1
            return last, events

        async def through_httpx() -> tuple[float, int]:
            last = 0.0
            events = 0
            async with client.stream("POST", url, json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    for choice in chunk.get("choices") or ():
                        if (choice.get("delta") or {}).get("content"):
                            last = time.perf_counter()
                            events += 1
            return last, events

        for _ in range(WARMUP_RUNS):
            await _measure(through_provider)
            await _measure(through_httpx)
        provider_samples: list[Sample] = []
        raw_samples: list[Sample] = []
        # Run in adjacent pairs, alternating which goes first, so drift in the machine's
        # load (other processes, the server's own pace) hits both sides alike.
        for index in range(RUNS):
            if index % 2:
                raw_samples.append(await _measure(through_httpx))
                provider_samples.append(await _measure(through_provider))
            else:
                provider_samples.append(await _measure(through_provider))
                raw_samples.append(await _measure(through_httpx))
    return provider_samples, raw_samples


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float]) -> str:
    """The interquartile range, to show how noisy the machine was."""
    low, _, high = statistics.quantiles(values, n=4)
    return f"p25-p75 {low:.3f}-{high:.3f}"


def _cpu_per_event(sample: Sample) -> float:
    return sample.cpu_seconds / max(sample.events, 1)


def run() -> list[Row]:
    """Measure and return the rows for the benchmark table."""
    binary = find_llama_server()
    if binary is None:
        raise BenchmarkUnavailableError(
            "llama-server not found (set HUSHCHAT_LLAMA_SERVER or run .ci/build-llama-server)"
        )
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-") as workdir:
        root = Path(workdir)
        model = write_tiny_model(root / "tiny-llama.gguf")
        with LlamaServer(binary, model, root / "llama-server.log") as server:
            provider_samples, raw_samples = asyncio.run(_compare(server))

    pairs = list(zip(provider_samples, raw_samples, strict=True))
    events = _median([float(s.events) for s in raw_samples])
    ttlt_provider = _median([s.time_to_last_token for s in provider_samples])
    ttlt_raw = _median([s.time_to_last_token for s in raw_samples])
    ttlt_ratios = [p.time_to_last_token / r.time_to_last_token for p, r in pairs]
    ttlt_ratio = _median(ttlt_ratios)
    cpu_provider = _median([_cpu_per_event(s) for s in provider_samples])
    cpu_raw = _median([_cpu_per_event(s) for s in raw_samples])
    cpu_ratios = [_cpu_per_event(p) / _cpu_per_event(r) for p, r in pairs]
    cpu_ratio = _median(cpu_ratios)
    note = f"{MAX_TOKENS} tokens, {int(events)} deltas, medians of {RUNS} runs"
    return [
        Row("providers: time to last token, raw httpx", ttlt_raw * 1000, "ms", note=note),
        Row("providers: time to last token, providers", ttlt_provider * 1000, "ms"),
        Row(
            "providers: time to last token, providers / raw httpx",
            ttlt_ratio,
            "x",
            budget=TIME_TO_LAST_TOKEN_BUDGET,
            note=f"median of paired runs, {_spread(ttlt_ratios)}",
        ),
        Row("providers: CPU per event, raw httpx", cpu_raw * 1e6, "µs"),
        Row("providers: CPU per event, providers", cpu_provider * 1e6, "µs"),
        Row(
            "providers: CPU per event, providers / raw httpx",
            cpu_ratio,
            "x",
            note=f"median of paired runs, {_spread(cpu_ratios)}",
        ),
    ]
