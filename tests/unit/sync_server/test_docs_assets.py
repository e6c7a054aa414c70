"""The vendored Swagger UI and ReDoc files are exactly the ones recorded in vendor.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sync_server.routers.docs import STATIC_DIR, VENDORED


def _manifest() -> dict[str, object]:
    data: dict[str, object] = json.loads((STATIC_DIR / "vendor.json").read_text("utf-8"))
    return data


def test_every_vendored_file_matches_its_recorded_hash() -> None:
    packages = _manifest()["packages"]
    assert isinstance(packages, list)
    assert sorted(p["directory"] for p in packages) == sorted(VENDORED)
    for package in packages:
        directory = STATIC_DIR / package["directory"]
        listed = set(package["files"])
        on_disk = {path.name for path in directory.iterdir()}
        assert on_disk == listed, package["name"]
        for name, entry in package["files"].items():
            digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
            assert digest == entry["sha256"], f"{package['directory']}/{name}"
        # Pinned exactly, with the registry's integrity and the licence shipped alongside.
        assert package["version"].count(".") == 2 and package["version"][0].isdigit()
        assert package["integrity"].startswith("sha512-")
        assert len(package["tarball_sha256"]) == 64
        assert package["tarball"].endswith(f"-{package['version']}.tgz")
        assert "LICENSE" in listed


def test_the_readme_names_the_pinned_versions() -> None:
    readme = (STATIC_DIR / "README.md").read_text("utf-8")
    for package in _manifest()["packages"]:  # type: ignore[attr-defined]
        assert f"`{package['name']}`" in readme
        assert package["version"] in readme


def test_assets_ship_inside_the_package() -> None:
    assert STATIC_DIR.parent == Path(__file__).resolve().parents[3] / "sync_server"
