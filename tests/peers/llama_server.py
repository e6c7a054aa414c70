"""The real llama.cpp ``llama-server`` as a test peer, on loopback with the tiny model.

``find_llama_server()`` locates the binary built by ``.ci/build-llama-server`` (the test
runner passes it in ``HUSHCHAT_LLAMA_SERVER``; otherwise the version-keyed cache is tried).
``LlamaServer`` starts it on ``127.0.0.1`` and a free port, waits for ``/health`` with a
bounded timeout, captures its log to a file, and stops it (terminate, then kill). Used by
the integration fixtures and by the provider benchmark.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from tests.peers.tiny_model import CONTEXT_LENGTH

LLAMA_SERVER_VERSION = "0.3.36"  # keep in step with .ci/build-llama-server
BINARY_ENV = "HUSHCHAT_LLAMA_SERVER"
HOST = "127.0.0.1"

# The model name llama-server reports in /v1/models and accepts in requests.
MODEL_ALIAS = "tiny-llama"

# Log lines llama-server writes when an HTTP client goes away mid-generation
# (tools/server/server-queue.cpp: "cancel task, id_task = N").
CANCEL_LOG_PATTERN = re.compile(r"cancel task, id_task = \d+")


class LlamaServerError(RuntimeError):
    """llama-server could not be started, or did not become healthy in time."""


def cached_binary() -> Path:
    """Where ``.ci/build-llama-server`` caches the binary for the pinned version."""
    root = os.environ.get("HUSHCHAT_PEER_CACHE")
    if root:
        cache_root = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        cache_root = (Path(xdg) if xdg else Path.home() / ".cache") / "hushchat-peers"
    return cache_root / f"llama-server-{LLAMA_SERVER_VERSION}" / "bin" / "llama-server"


def find_llama_server() -> Path | None:
    """The llama-server binary to test against, or ``None`` when there is none."""
    configured = os.environ.get(BINARY_ENV)
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    path = cached_binary()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_environment() -> dict[str, str]:
    """The environment for the server: ours without ``LLAMA_ARG_*`` overrides or proxies."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LLAMA_", "HF_")) and "proxy" not in key.lower()
    }


class LlamaServer:
    """One llama-server process serving the tiny model on ``127.0.0.1``.

    Use as a context manager or call ``start()``/``stop()``. ``restart()`` brings it back
    on the same port after ``kill()``, so a long-lived fixture survives a test that kills it.
    """

    def __init__(
        self,
        binary: Path,
        model_path: Path,
        log_path: Path,
        *,
        parallel: int = 1,
        startup_timeout: float = 60.0,
        port: int | None = None,
        n_predict: int | None = None,
        embeddings: bool = False,
    ) -> None:
        self.binary = binary
        self.model_path = model_path
        self.log_path = log_path
        self.parallel = parallel
        self.startup_timeout = startup_timeout
        self.port = free_port() if port is None else port
        # The answer length when a request sets none (-1: until the model stops).
        self.n_predict = n_predict
        # Serve /v1/embeddings too (mean pooling: the tiny model has no pooling of its own).
        self.embeddings = embeddings
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash or ``/v1``."""
        return f"http://{HOST}:{self.port}"

    @property
    def model(self) -> str:
        """The model name the server reports and accepts."""
        return MODEL_ALIAS

    @property
    def context_size(self) -> int:
        return CONTEXT_LENGTH

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--model",
            str(self.model_path),
            "--alias",
            MODEL_ALIAS,
            "--ctx-size",
            str(CONTEXT_LENGTH * self.parallel),
            "--parallel",
            str(self.parallel),
            "--threads",
            "1",
            "--threads-batch",
            "1",
            "--threads-http",
            "2",
            "--jinja",
            # Lets a request stream far more tokens than fit in the context, so tests that act
            # mid-stream have a long stream to act on.
            "--context-shift",
            "--no-webui",
            "--slots",
            "--no-warmup",
            # No prompt cache in RAM: every request starts from a known state.
            "--cache-ram",
            "0",
            "--no-cache-idle-slots",
            "--offline",
            *(["--n-predict", str(self.n_predict)] if self.n_predict is not None else []),
            *(["--embeddings", "--pooling", "mean"] if self.embeddings else []),
        ]

    def start(self) -> None:
        """Start the server and wait until ``/health`` answers 200, or raise."""
        if self.process is not None and self.process.poll() is None:
            raise LlamaServerError("llama-server is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=_clean_environment(),
            start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not its
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise LlamaServerError(
                        f"llama-server exited with status {self.process.returncode} while "
                        f"starting; its log:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        return
                time.sleep(0.05)
        raise LlamaServerError(
            f"llama-server did not become healthy within {self.startup_timeout:.0f} s; "
            f"its log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server, killing it if it does not exit within ``timeout``."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; ``restart()`` brings it back."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10.0)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """Everything the server logged so far."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_offset(self) -> int:
        """The current end of the log, to look only at what comes after it."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_log(
        self, pattern: re.Pattern[str], *, after: int = 0, timeout: float = 5.0
    ) -> re.Match[str] | None:
        """Poll the log (from byte ``after``) until ``pattern`` appears or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(after)
                text = log.read().decode("utf-8", errors="replace")
            match = pattern.search(text)
            if match is not None or time.monotonic() >= deadline:
                return match
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
