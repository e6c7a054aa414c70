"""The ``hushchat-sync`` command: ``serve``, ``migrate``, ``gen-keys``, ``check-config``,
``escrow process`` and ``escrow public-key``.

``serve`` needs only the escrow public key. ``escrow process`` is the only command that
opens escrowed keys (it needs ``ESCROW_PRIVATE_KEY`` and ``ESCROW_KEK``); run it where the
server's environment does not reach those two.

Exit codes: 0 success, 1 the check found problems / the operation failed, 2 the settings
are incomplete (the message names the variable to set).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from sync_server import __version__
from sync_server.errors import ConfigError, DatabaseNotMigratedError
from sync_server.sealing import generate_secrets
from sync_server.settings import ENV_PREFIX, Settings, load_settings

#: App factory each ``serve --workers N`` process imports.
WORKER_APP = "sync_server.app:create_app_from_environment"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hushchat-sync",
        description="Hushchat's self-hosted sync server. Settings come from HUSHCHAT_SYNC_* "
        "environment variables (see docs/server.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file", type=Path, default=None, help="Read settings from this env file too."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the HTTP server (uvicorn).")
    serve.add_argument("--host", default=None, help="Bind address (default: HOST setting).")
    serve.add_argument("--port", type=int, default=None, help="Port (default: PORT setting).")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Server processes sharing the database (default: WORKERS setting, 1).",
    )
    commands.add_parser("migrate", help="Apply database migrations and exit.")
    commands.add_parser(
        "gen-keys", help="Print a new secret key, escrow key pair and KEK as env lines."
    )
    commands.add_parser("check-config", help="Print what is missing or wrong, then exit.")
    escrow = commands.add_parser(
        "escrow", help="Escrow key holder: seal recovery answers (needs the private key)."
    )
    escrow_commands = escrow.add_subparsers(dest="escrow_command", required=True)
    process = escrow_commands.add_parser(
        "process",
        help="Seal the escrowed key to each recovery past its delay (the only code that "
        "opens escrows).",
    )
    mode = process.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="One pass, then exit (for timers).")
    mode.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="S",
        help="Seconds between passes, until SIGTERM/SIGINT (default: "
        "ESCROW_PROCESS_INTERVAL_SECONDS).",
    )
    for command in (
        process,
        escrow_commands.add_parser(
            "public-key", help="Print ESCROW_PUBLIC_KEY for the wrapped private key (for serve)."
        ),
    ):
        command.add_argument(
            "--key-file",
            type=Path,
            default=None,
            help="File with the wrapped escrow private key (instead of ESCROW_PRIVATE_KEY).",
        )
    return parser


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    workers: int | None = None,
    env_file: Path | None = None,
) -> int:
    import uvicorn

    from sync_server.app import create_app
    from sync_server.http_protocol import CoalescingHttpToolsProtocol
    from sync_server.observability import configure_logging

    workers = settings.workers if workers is None else workers
    if workers < 1:
        raise ConfigError("--workers must be at least 1.")
    configure_logging(settings.log_level, settings.log_format)
    # Validates the settings and the escrow key before forking.
    app = create_app(settings, handle_signals=True, freeze_gc=True)
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": settings.port if port is None else port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": settings.forwarded_allow_ips is not None,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "server_header": False,
        # One write per answer instead of two (sync_server/http_protocol.py).
        "http": CoalescingHttpToolsProtocol,
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return 0
    # Several processes: migrate once here, then every worker builds its own app from the
    # same environment (the env file is passed on through HUSHCHAT_SYNC_ENV_FILE) and only
    # checks that the schema is current.
    if settings.auto_migrate:
        asyncio.run(_migrate(settings))
    os.environ[f"{ENV_PREFIX}AUTO_MIGRATE"] = "false"
    # Each worker knows it is one of several (a SQLite file is then not served inline).
    os.environ[f"{ENV_PREFIX}WORKERS"] = str(workers)
    if env_file is not None:
        os.environ[f"{ENV_PREFIX}ENV_FILE"] = str(env_file.resolve())
    uvicorn.run(WORKER_APP, factory=True, workers=workers, **options)
    return 0


async def _migrate(settings: Settings) -> str:
    from sync_server.db import Database, head_revision

    db = Database(settings)
    try:
        await db.migrate()
    finally:
        await db.close()
    return head_revision()


async def _database_status(settings: Settings) -> str:
    from sync_server.db import Database

    db = Database(settings)
    try:
        await db.ping()
        await db.ensure_migrated()
    finally:
        await db.close()
    return "database reachable, schema up to date"


def _check_config(settings: Settings) -> int:
    from sync_server.escrow_worker import load_escrow_keys, serve_escrow_key

    problems = settings.problems()
    if not problems:
        try:
            public = serve_escrow_key(settings)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            print(f"ok: escrow public key (key id {public.key_id})")
    if not problems and settings.escrow_private_key is not None:
        try:
            keys = load_escrow_keys(settings)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            print(f"ok: escrow key unwraps (key id {keys.key_id})")
    for warning in settings.warnings():
        print(f"warning: {warning}")
    try:
        print("ok: " + asyncio.run(_database_status(settings)))
    except DatabaseNotMigratedError as exc:
        print(f"warning: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        problems.append(f"database unreachable: {type(exc).__name__}: {exc}")
    for problem in problems:
        print(f"error: {problem}")
    if problems:
        return 1
    print("ok: configuration complete")
    return 0


def _escrow(settings: Settings, args: argparse.Namespace) -> int:
    from sync_server.escrow_worker import load_escrow_keys, run
    from sync_server.observability import configure_logging

    keys = load_escrow_keys(settings, args.key_file)
    if args.escrow_command == "public-key":
        print(f"{ENV_PREFIX}ESCROW_PUBLIC_KEY={keys.public.to_text()}")
        return 0
    configure_logging(settings.log_level, settings.log_format)
    interval = args.interval or settings.escrow_process_interval_seconds
    if interval <= 0:
        raise ConfigError("--interval must be more than 0 seconds.")
    return asyncio.run(run(settings, keys, once=args.once, interval=interval))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hushchat-sync``."""
    args = _parser().parse_args(argv)
    if args.command == "gen-keys":
        for name, value in generate_secrets().items():
            print(f"{ENV_PREFIX}{name}={value}")
        return 0
    try:
        settings = load_settings(args.env_file)
        if args.command == "check-config":
            return _check_config(settings)
        if args.command == "escrow":
            return _escrow(settings, args)
        if args.command == "migrate":
            revision = asyncio.run(_migrate(settings))
            print(f"database at revision {revision}")
            return 0
        return _serve(settings, args.host, args.port, args.workers, args.env_file)
    except ConfigError as exc:
        print(f"hushchat-sync: {exc}", file=sys.stderr)
        return 2
    except DatabaseNotMigratedError as exc:
        print(f"hushchat-sync: {exc}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"hushchat-sync: database error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
