"""The ``hushchat-providers`` wheel on its own: built, installed into a clean virtual
environment without the app, and streaming from the real llama-server through it.

The environment gets only ``requirements-providers.lock`` (hashed, from PyPI; pip's cache
makes repeated runs fast) and the wheel (``--no-deps``): neither ``app`` nor PySide6 can
be imported there, so the package really works without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.peers.llama_server import LlamaServer

pytestmark = [pytest.mark.llama_server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    import providers
    from providers import ChatMessage, ChatRequest, ProviderSpec, TextDelta, create_provider


    async def main(base_url: str, model: str) -> None:
        spec = ProviderSpec(
            name="package-test", type="openai", base_url=base_url, model=model, max_retries=0
        )
        request = ChatRequest(messages=[ChatMessage(role="user", content="Hi")], max_tokens=16)
        async with create_provider(spec) as provider:
            async for event in provider.stream_chat(request):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
        print()
        print("types:", ",".join(sorted(providers.provider_types())))
        print("from:", providers.__file__)


    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _environment() -> dict[str, str]:
    """Ours without anything that would reach the shared venv or the checkout."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        and not key.startswith("COVERAGE")
    }


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_streams_from_llama_server_without_the_app(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    built = _run(
        [sys.executable, str(ROOT / "packaging/providers/build.py"), "--out", str(tmp_path)],
        cwd=ROOT,
    )
    wheel = Path(built.stdout.strip().splitlines()[-1])
    assert wheel.name.startswith("hushchat_providers-") and wheel.is_file()
    build_s = time.monotonic() - started

    work = tmp_path / "work"  # not the checkout: nothing importable by accident
    work.mkdir()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    lock = ROOT / "requirements-providers.lock"
    _run([*pip, "--require-hashes", "-r", str(lock)], cwd=work)
    _run([*pip, "--no-deps", str(wheel)], cwd=work)
    install_s = time.monotonic() - started - build_s

    for module in ("app", "PySide6", "sync_server"):
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"],
            cwd=work,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert probe.returncode != 0, f"{module} is importable in the clean venv"
        assert "ModuleNotFoundError" in probe.stderr, probe.stderr

    script = work / "stream.py"
    script.write_text(SCRIPT, encoding="utf-8")
    result = _run(
        [str(python), str(script), f"{llama_server.base_url}/v1", llama_server.model],
        cwd=work,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    text = "\n".join(line for line in lines if not line.startswith(("types:", "from:")))
    assert text.strip(), f"no text streamed: {result.stdout!r} {result.stderr!r}"
    assert "types: anthropic,ollama,openai" in lines
    origin = next(line for line in lines if line.startswith("from:"))
    assert origin.startswith(f"from: {venv}"), origin  # the wheel, not the checkout
    print(
        f"providers wheel: build {build_s:.1f} s, clean venv + lock install {install_s:.1f} s, "
        f"total {time.monotonic() - started:.1f} s; streamed {len(text)} characters"
    )
