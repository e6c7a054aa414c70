"""The package's surface: exactly ``__all__``, semantic version, and no imports of the app."""

from __future__ import annotations

import re
import subprocess
import sys
import types

import providers


def test_all_is_exactly_the_public_names() -> None:
    for name in ("Provider", "create_provider", "provider_types"):  # loaded lazily
        getattr(providers, name)
    public = {
        name
        for name, value in vars(providers).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(providers.__all__) == public | {"__version__"}
    assert len(providers.__all__) == len(set(providers.__all__))
    assert providers.__all__ == sorted(providers.__all__)


def test_every_exported_name_resolves() -> None:
    for name in providers.__all__:
        assert getattr(providers, name) is not None


def test_the_api_other_code_relies_on_is_exported() -> None:
    for name in ("create_provider", "Provider", "provider_types", "UnknownProviderTypeError"):
        assert name in providers.__all__


def test_version_is_semantic() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", providers.__version__)


def test_providers_imports_nothing_from_the_app_or_the_server() -> None:
    code = (
        "import sys, providers, providers.openai, providers.ollama, providers.anthropic, "
        "providers.template, providers.registry\n"
        "providers.provider_types()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'app', 'sync_server', 'PySide6'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_importing_for_types_does_not_load_the_http_stack() -> None:
    import subprocess
    import sys

    code = "import sys, providers.spec; print('httpx' in sys.modules, 'jinja2' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
