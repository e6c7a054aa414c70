"""Run the benchmarks: ``python -m tests.benchmarks [NAME ...]``.

Imports every ``bench_*.py`` module in this package (or only those whose name contains one
of the NAMEs; a NAME that is a whole module name, ``bench_sync``, selects only that one),
calls its ``run() -> list[Row]`` and prints one table of figure / value /
budget / ratio. A module that cannot run here raises ``BenchmarkUnavailableError`` and is
listed as skipped. Figures over budget are reported, not failed (shared DESIGN §8); the exit
status is non-zero only when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import cast

import tests.benchmarks as package
from tests.benchmarks._table import BenchmarkUnavailableError, Row, format_table


def benchmark_modules(names: Sequence[str] = ()) -> list[str]:
    """Fully qualified names of the ``bench_*`` modules, filtered by ``names`` if given."""
    found = sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("bench_")
    )
    if names:
        # A whole module name selects just that module ("bench_sync", not also
        # "bench_sync_client"); any other NAME selects every module whose name has it.
        found = [
            module
            for module in found
            if any(name == module or (name in module and name not in found) for name in names)
        ]
    return [f"{package.__name__}.{module}" for module in found]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        help="run only bench modules whose name has this (a whole name, bench_sync: only it)",
    )
    args = parser.parse_args(argv)

    modules = benchmark_modules(args.names)
    if not modules:
        print("no benchmark modules matched", file=sys.stderr)
        return 2
    rows: list[Row] = []
    skipped: list[str] = []
    crashed: list[str] = []
    for name in modules:
        short = name.rsplit(".", 1)[-1]
        print(f"running {short} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
            run = cast(Callable[[], list[Row]], module.run)
            rows.extend(run())
        except BenchmarkUnavailableError as exc:
            skipped.append(f"{short}: {exc}")
        except Exception:  # noqa: BLE001 - one crashed benchmark must not hide the others
            crashed.append(short)
            traceback.print_exc()
        else:
            print(f"  {short} took {time.perf_counter() - started:.1f} s", file=sys.stderr)

    print(format_table(rows))
    for line in skipped:
        print(f"skipped {line}")
    for short in crashed:
        print(f"CRASHED {short} (traceback above)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
