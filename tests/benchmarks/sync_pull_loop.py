"""Sustained pulls against ``hushchat-sync serve``: ``python -m tests.benchmarks.sync_pull_loop``.

One account holds ``RECORDS`` records (pushed in batches of 100); then ``DEVICES`` devices
of that account pull pages of 100 from the start over and over for ``SECONDS`` seconds,
each waiting for its page before asking for the next. Prints pages/s and records/s, and
the CPU time per page of the server's processes and of this load generator (psutil), so
a page's cost can be split between the two (docs/server.md, "Performance", fifth pass).
PostgreSQL when ``HUSHCHAT_TEST_POSTGRES_URL`` is set (its schema ``public`` is dropped
and made again: point it at a database of its own), else SQLite in a temporary folder.
Not a ``bench_*`` module: no budget, run by hand. Knobs: ``HUSHCHAT_PULL_LOOP_DEVICES``
(default 1), ``HUSHCHAT_PULL_LOOP_SECONDS`` (default 8).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from sync_server.sealing import generate_secrets
from sync_server.settings import Settings
from tests.benchmarks import bench_sync

RECORDS = 2000
PAGE = 100


async def _run(devices: int, seconds: float) -> None:
    database_url = os.environ.get("HUSHCHAT_TEST_POSTGRES_URL")
    with tempfile.TemporaryDirectory(prefix="hushchat-pull-loop-") as tmp:
        values = generate_secrets()
        data_dir = Path(tmp) / "data"
        settings = Settings(
            **{k.lower(): v for k, v in values.items()},
            data_dir=data_dir,
            database_url=database_url,
        )
        if database_url:
            await bench_sync._reset_postgres(database_url)
        credentials = await bench_sync._seed(settings, 1)
        env = bench_sync.server_env(values, settings)
        server = bench_sync._Server(env, Path(tmp) / "server.log", 1)
        try:
            await server.wait_ready()
            url = server.url
            pusher = bench_sync._RawDevice(url, credentials[0], timeout=60)
            try:
                for batch in range(RECORDS // PAGE):
                    records = [bench_sync._one_record(f"r{batch}-{n}") for n in range(PAGE)]
                    body = json.dumps({"records": records}).encode()
                    await pusher.call("POST", "/v1/sync/push", body=body)
            finally:
                pusher.close()
            # One device key per account in the benchmark's seed: every puller uses it.
            pullers = [
                bench_sync._RawDevice(url, credentials[0], timeout=60) for _ in range(devices)
            ]
            pages = [0]

            async def pull(device: bench_sync._RawDevice, until: float) -> None:
                while time.perf_counter() < until:
                    cursor = 0
                    while time.perf_counter() < until:
                        page = await device.call(
                            "GET", "/v1/sync/changes", f"?cursor={cursor}&limit={PAGE}"
                        )
                        pages[0] += 1
                        cursor = page["cursor"]
                        if not page["has_more"]:
                            break

            try:
                await asyncio.gather(*[pull(d, time.perf_counter() + 1.0) for d in pullers])
                pages[0] = 0
                server_cpu, own_cpu = server.cpu_seconds(), time.process_time()
                started = time.perf_counter()
                until = started + seconds
                await asyncio.gather(*[pull(device, until) for device in pullers])
                elapsed = time.perf_counter() - started
                server_cpu = server.cpu_seconds() - server_cpu
                own_cpu = time.process_time() - own_cpu
            finally:
                for device in pullers:
                    device.close()
        finally:
            server.stop()
    done = pages[0]
    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"{backend}, {devices} device(s) pulling pages of {PAGE} for {elapsed:.1f} s")
    print(f"  pages/s              {done / elapsed:10,.0f}")
    print(f"  records/s            {done * PAGE / elapsed:10,.0f}")
    print(f"  wall per page        {elapsed * devices / done * 1000:10.3f} ms (each device)")
    print(f"  server CPU per page  {server_cpu / done * 1000:10.3f} ms")
    print(f"  load generator CPU   {own_cpu / done * 1000:10.3f} ms per page")


def main() -> None:
    """Run the loop with the knobs of the module docstring."""
    devices = int(os.environ.get("HUSHCHAT_PULL_LOOP_DEVICES", "1"))
    seconds = float(os.environ.get("HUSHCHAT_PULL_LOOP_SECONDS", "8"))
    asyncio.run(_run(devices, seconds))


if __name__ == "__main__":
    main()
