"""Build the ``hushchat-providers`` wheel from the repository's ``providers/`` folder.

Usage: ``.venv/bin/python packaging/providers/build.py [--out DIR]`` (default ``dist/``);
prints the wheel's path. poetry-core includes only folders under the pyproject's own
directory, so the package, its README, CHANGELOG and the LICENSE are staged next to
``packaging/providers/pyproject.toml`` in a temporary directory, with the version taken
from ``providers.__version__`` (read from the source, not imported), and built there with
``pip wheel --no-deps --no-build-isolation`` (poetry-core comes from the running Python,
installed from the lock files). See docs/providers.md.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DYNAMIC_VERSION = 'dynamic = ["version"]'


def package_version(init: Path = ROOT / "providers" / "__init__.py") -> str:
    """``providers.__version__``, read from the module's source."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise SystemExit(f"no __version__ = '...' in {init}; add it there")


def stage(target: Path) -> None:
    """Copy what the distribution is built from into ``target``."""
    pyproject = (HERE / "pyproject.toml").read_text(encoding="utf-8")
    if DYNAMIC_VERSION not in pyproject:
        raise SystemExit(f"{HERE / 'pyproject.toml'} must declare {DYNAMIC_VERSION}")
    staged = pyproject.replace(DYNAMIC_VERSION, f'version = "{package_version()}"', 1)
    (target / "pyproject.toml").write_text(staged, encoding="utf-8")
    shutil.copytree(
        ROOT / "providers",
        target / "providers",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy2(ROOT / "providers" / "README.md", target / "README.md")
    shutil.copy2(ROOT / "LICENSE", target / "LICENSE")


def build(out: Path) -> Path:
    """Build the wheel into ``out`` and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    version = package_version()
    with tempfile.TemporaryDirectory(prefix="hushchat-providers-") as tmp:
        staged = Path(tmp)
        stage(staged)
        subprocess.run(  # noqa: S603 (this Python's pip, fixed arguments)
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-cache-dir",
                "--quiet",
                "--wheel-dir",
                str(out),
                str(staged),
            ],
            check=True,
        )
    wheels = sorted(out.glob(f"hushchat_providers-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip wheel left no hushchat_providers-{version} wheel in {out}")
    return wheels[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the wheel goes")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
