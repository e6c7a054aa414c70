"""``hushchat --self-test``: is this installation (a bundle, a venv) able to run?

Offscreen Qt, a throw-away vault in a temporary profile, the main window, a markdown answer
from a provider scripted in this process (no network), a lock; then the temporary folder
is removed. Exit 0 and one line of timings on stdout when every step worked; otherwise
one line on stderr saying which step failed, and a non-zero exit code.

The user's own profile, config, settings, keychain and caches are never touched: before
Qt or any service starts, this process's HOME-derived folders (XDG_*), the profile and
config variables and the keyring backend all point into the temporary folder or nowhere.
The window part lives in ``app.ui.self_test`` (only app/ui imports Qt).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path

from app.errors import ExitCode

__all__ = ["isolate_environment", "run_self_test"]

log = logging.getLogger(__name__)


def isolate_environment(env: MutableMapping[str, str], root: Path) -> None:
    """Point every place the app or Qt could write to inside ``root`` (in ``env``)."""
    for name in ("config", "data", "cache", "state", "runtime"):
        (root / name).mkdir(mode=0o700, exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(root / "config")
    env["XDG_DATA_HOME"] = str(root / "data")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    env["XDG_STATE_HOME"] = str(root / "state")
    env["XDG_RUNTIME_DIR"] = str(root / "runtime")
    env["HUSHCHAT_PROFILE"] = str(root / "profile")
    env["HUSHCHAT_CONFIG"] = str(root / "config.yml")
    # No OS keychain: nothing is read from or written to the user's.
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env.setdefault("QT_QPA_PLATFORM", "offscreen")


def _check_provider_types(error: type[Exception]) -> None:
    """The built-in provider types load (a bundle must ship the modules they name)."""
    from providers.registry import provider_types

    missing = {"openai", "ollama", "anthropic"} - set(provider_types())
    if missing:
        raise error(f"provider types {sorted(missing)} do not load (see --debug)")


def _check_tls(error: type[Exception]) -> None:
    """TLS works: the ssl module loads (on Linux over the system's OpenSSL 3) and trusts
    the bundled certificate authorities, as the HTTPS providers' client does."""
    import ssl

    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    if not context.get_ca_certs() or ssl.OPENSSL_VERSION_INFO < (3,):
        raise error(f"TLS is not usable here ({ssl.OPENSSL_VERSION}; see --debug)")


def run_self_test() -> int:
    """Run the self-test in this process; returns the exit code."""
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="hushchat-self-test-"))
    saved = dict(os.environ)
    try:
        isolate_environment(os.environ, root)
        from app.ui.self_test import SelfTestError, run_window_check

        try:
            _check_provider_types(SelfTestError)
            _check_tls(SelfTestError)
            timings = run_window_check(root)
        except SelfTestError as error:
            print(f"hushchat: self-test failed: {error}", file=sys.stderr)
            return ExitCode.UNEXPECTED
    except Exception as error:  # one line for the user; the traceback with --debug
        log.debug("self-test crashed", exc_info=True)
        print(
            f"hushchat: self-test failed: {type(error).__name__}: {error} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return ExitCode.UNEXPECTED
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)
    timings["process"] = (time.perf_counter() - started) * 1000
    figures = ", ".join(f"{name} {value:.0f} ms" for name, value in timings.items())
    print(f"hushchat self-test passed: {figures}")
    return ExitCode.OK
