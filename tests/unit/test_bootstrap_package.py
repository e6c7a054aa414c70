"""The pieces of ``bootstrap.py package`` that need no PyInstaller run: the manifest, the
Linux tarball (same folder, same bytes), the version and the venv an existing one gives."""

from __future__ import annotations

import importlib.util
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "packaging" / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _onedir(root: Path) -> Path:
    onedir = root / "hushchat"
    (onedir / "_internal" / "b").mkdir(parents=True)
    (onedir / "hushchat").write_bytes(b"x" * 10)
    (onedir / "_internal" / "b" / "z.so").write_bytes(b"y" * 3)
    (onedir / "_internal" / "a.txt").write_bytes(b"")
    return onedir


def test_manifest_is_sorted_paths_with_sizes_and_a_total(
    bootstrap: ModuleType, tmp_path: Path
) -> None:
    lines, total = bootstrap.manifest(_onedir(tmp_path))
    assert lines == ["_internal/a.txt\t0", "_internal/b/z.so\t3", "hushchat\t10"]
    assert total == 13


def test_the_tarball_of_the_same_folder_is_the_same_bytes(
    bootstrap: ModuleType, tmp_path: Path
) -> None:
    onedir = _onedir(tmp_path)
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    bootstrap.linux_tarball(onedir, first)
    os.utime(onedir / "hushchat", (1, 1))  # a later build: other times, same files
    bootstrap.linux_tarball(onedir, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        names = archive.getnames()
        assert {m.uid for m in archive.getmembers()} == {0}
    assert names[0] == "hushchat" and "hushchat/_internal/b/z.so" in names
    assert names == sorted(names)


def test_version_is_the_apps(bootstrap: ModuleType) -> None:
    assert bootstrap.app_version() == app.__version__


def test_package_refuses_a_venv_that_is_not_one(
    bootstrap: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bootstrap.cmd_package(["--venv", str(tmp_path)]) == 2
    assert "is not a virtual environment" in capsys.readouterr().err


def test_venv_python_is_the_running_one_for_its_prefix(bootstrap: ModuleType) -> None:
    assert bootstrap.venv_python(Path(sys.prefix)).exists()
