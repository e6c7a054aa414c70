"""One CLI chat turn: ``hushchat chat`` with a running unlock agent versus simonw's ``llm``.

Both talk to the same llama-server (``tests/peers``, the tiny model) with the same prompt
and the same max tokens, and both store the exchange (hushchat in its SQLCipher vault,
``llm`` in its SQLite log). Per round, in alternating order: ``hushchat chat`` served by
``hushchat unlock`` (no KDF), ``llm prompt``, and for reference ``hushchat chat`` with the
passphrase in the environment and no agent (the Argon2id KDF paid at the default 256 MiB,
t=3, p=4). Wall time of each whole process, median over the rounds; the budget (shared
DESIGN §8) is the median of the paired hushchat/llm ratios ≤ 0.9. A new chat's turn
includes hushchat's automatic title (a second, short request), which ``llm`` does not make.

``llm`` is installed once into a venv outside the repository
(``~/.cache/hushchat-bench/llm-venv-<version>``, or under ``$HUSHCHAT_BENCH_CACHE``) and
pointed at the server with an ``extra-openai-models.yaml`` in its own ``LLM_USER_PATH``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.agent.protocol import is_supported
from tests.benchmarks._table import BenchmarkUnavailableError, Row
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer, find_llama_server
from tests.peers.tiny_model import write_tiny_model

LLM_VERSION = "0.36"
ROUNDS = 11
WARMUP_ROUNDS = 2
MAX_TOKENS = 32
PROMPT = "hello world"
PASSPHRASE = "benchmark passphrase, long enough to pass"
RATIO_BUDGET = 0.9
DEFAULT_KDF = ["--kdf-memory-mib", "256", "--kdf-iterations", "3", "--kdf-parallelism", "4"]
HUSHCHAT = Path(sys.executable).with_name("hushchat")


def _cache_root() -> Path:
    configured = os.environ.get("HUSHCHAT_BENCH_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hushchat-bench"


def llm_command() -> Path:
    """The ``llm`` executable of the cached venv, installed on first use."""
    venv = _cache_root() / f"llm-venv-{LLM_VERSION}"
    executable = venv / "bin" / "llm"
    if executable.exists():
        return executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"llm=={LLM_VERSION}"],
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(venv, ignore_errors=True)
        raise BenchmarkUnavailableError(f"could not install llm=={LLM_VERSION}: {error}") from None
    return executable


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float  # seconds from start to exit
    cpu: float  # user + system seconds of the process (and its children)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Setup:
    """A profile with a calibrated vault, a hushchat config and an llm config, one server."""

    def __init__(self, root: Path, runtime: Path, server: LlamaServer) -> None:
        self.root = root
        self.runtime = runtime
        self.server = server
        self.home = root / "home"
        self.profile = self.home / "profile"
        self.config = root / "config.yml"
        self.llm_user = root / "llm"
        self.llm = llm_command()
        (self.home / "tmp").mkdir(parents=True)
        self.llm_user.mkdir()
        self.config.write_text(
            "default_llm: local\n"
            "llms:\n"
            "  - provider_name: local\n"
            "    type: openai\n"
            f"    base_url: {server.base_url}/v1\n"
            f"    model_name: {MODEL_ALIAS}\n"
            "    context_size: 512\n"
        )
        (self.llm_user / "extra-openai-models.yaml").write_text(
            f"- model_id: tiny\n  model_name: {MODEL_ALIAS}\n  api_base: {server.base_url}/v1\n"
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
        env.update(
            HOME=str(self.home),
            TMPDIR=str(self.home / "tmp"),
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            HUSHCHAT_PROFILE=str(self.profile),
            HUSHCHAT_CONFIG=str(self.config),
            LLM_USER_PATH=str(self.llm_user),
        )
        env.update(extra)
        return env

    def run(self, argv: list[str], *, stdin: str | None = None, **extra: str) -> Sample:
        """Run to completion; wall and CPU seconds. Raises if it fails."""
        cpu_before = _children_cpu()
        started = time.perf_counter()
        result = subprocess.run(
            argv,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            env=self.env(**extra),
            timeout=120,
            check=False,
        )
        elapsed = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} {argv[1]} failed: {result.stderr.strip()[-500:]}")
        return Sample(elapsed, cpu)

    def prepare(self) -> None:
        # The default Argon2id parameters (what calibration picks on an idle 2-core machine),
        # fixed so that a busy machine does not calibrate a cheaper KDF for the reference.
        self.run(
            [str(HUSHCHAT), "vault", "init", "--passphrase-stdin", *DEFAULT_KDF],
            stdin=PASSPHRASE + "\n",
        )
        self.run(
            [str(HUSHCHAT), "unlock", "--for", "1h", "--passphrase-stdin"],
            stdin=PASSPHRASE + "\n",
        )

    def lock(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.run([str(HUSHCHAT), "lock"])

    def hushchat_turn(self, *, with_agent: bool) -> Sample:
        argv = [str(HUSHCHAT), "chat", "--max-tokens", str(MAX_TOKENS), PROMPT]
        if with_agent:
            return self.run(argv)
        # Another runtime directory hides the agent: the command finds none and pays the KDF.
        return self.run(
            argv, HUSHCHAT_PASSPHRASE=PASSPHRASE, XDG_RUNTIME_DIR=str(self.runtime / "none")
        )

    def llm_turn(self) -> Sample:
        return self.run(
            [str(self.llm), "prompt", "-m", "tiny", "-o", "max_tokens", str(MAX_TOKENS), PROMPT]
        )


@contextlib.contextmanager
def _setup() -> Iterator[Setup]:
    if not is_supported():
        raise BenchmarkUnavailableError("the unlock agent is Linux/macOS only")
    usage = subprocess.run(
        [str(HUSHCHAT), "unlock", "--help"], capture_output=True, text=True, check=False
    )
    if "--for DURATION" not in usage.stdout:
        raise BenchmarkUnavailableError("'hushchat unlock' is not registered in app/cli.py")
    binary = find_llama_server()
    if binary is None:
        raise BenchmarkUnavailableError("llama-server not built (run .ci/build-llama-server)")
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        root = Path(tmp)
        runtime = Path(tempfile.mkdtemp(prefix="hc-run-", dir="/tmp"))
        runtime.chmod(0o700)
        (runtime / "none").mkdir(mode=0o700)
        model = write_tiny_model(root / "tiny.gguf")
        try:
            with LlamaServer(binary, model, root / "llama-server.log") as server:
                setup = Setup(root, runtime, server)
                setup.prepare()
                try:
                    yield setup
                finally:
                    setup.lock()
        finally:
            shutil.rmtree(runtime, ignore_errors=True)


def _median(samples: list[Sample], field: str) -> float:
    return float(statistics.median(getattr(sample, field) for sample in samples))


def _paired(left: list[Sample], right: list[Sample], field: str) -> float:
    pairs = zip(left, right, strict=True)
    return float(statistics.median(getattr(a, field) / getattr(b, field) for a, b in pairs))


def run() -> list[Row]:
    with _setup() as setup:
        for _ in range(WARMUP_ROUNDS):
            setup.hushchat_turn(with_agent=True)
            setup.llm_turn()
            setup.hushchat_turn(with_agent=False)
        agent: list[Sample] = []
        llm: list[Sample] = []
        no_agent: list[Sample] = []
        for index in range(ROUNDS):
            if index % 2:
                llm.append(setup.llm_turn())
                agent.append(setup.hushchat_turn(with_agent=True))
            else:
                agent.append(setup.hushchat_turn(with_agent=True))
                llm.append(setup.llm_turn())
            no_agent.append(setup.hushchat_turn(with_agent=False))
    note = f"median of {ROUNDS}, {MAX_TOKENS} tokens"
    return [
        Row("CLI chat turn: hushchat, agent running", _median(agent, "wall"), "s", note=note),
        Row(f"CLI chat turn: llm {LLM_VERSION}", _median(llm, "wall"), "s", note=note),
        Row(
            "CLI chat turn: hushchat (agent) / llm",
            _paired(agent, llm, "wall"),
            "x",
            budget=RATIO_BUDGET,
            note="wall time, median of paired ratios",
        ),
        Row(
            "CLI chat turn: hushchat, no agent (KDF paid)",
            _median(no_agent, "wall"),
            "s",
            note=f"{_paired(no_agent, llm, 'wall'):.2f}x llm, reference",
        ),
        Row(
            "CLI chat turn CPU: hushchat (agent) / llm",
            _paired(agent, llm, "cpu"),
            "x",
            note=(
                f"{_median(agent, 'cpu'):.3f} s / {_median(llm, 'cpu'):.3f} s, "
                "steadier than wall time on a busy machine"
            ),
        ),
        Row(
            "CLI chat turn CPU: hushchat, no agent / llm",
            _paired(no_agent, llm, "cpu"),
            "x",
            note=f"{_median(no_agent, 'cpu'):.3f} s, reference",
        ),
    ]
