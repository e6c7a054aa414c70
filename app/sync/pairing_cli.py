"""``hushchat sync link`` and ``hushchat sync join CODE``: link a new device with a code.

``sync link`` runs on a device that syncs already (unlocked, Private chats open): it
prints a pairing code such as ``4127-abacus-nimble-tundra`` on standard output (the
instructions go to standard error), valid once for ten minutes, and waits. ``sync join
CODE --server URL`` runs on the new device: it signs in like ``sync login`` (browser,
``--no-browser``, ``--device`` or ``--local EMAIL``; same account as the other device),
creates this profile's vault if there is none (a new passphrase, and its recovery code
printed once), then receives the account's keys from the other device and fetches every
chat, Standard and Private. No passphrase is typed on the new device for the account and
none crosses the server (``app.sync.pairing``, docs/sync.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from typing import TYPE_CHECKING

from app.errors import ExitCode

if TYPE_CHECKING:
    from app.session import Session
    from app.sync.pairing import PairingCode

__all__ = ["register"]


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    unlock: list[argparse.ArgumentParser],
) -> None:
    """Add ``link`` and ``join`` to ``hushchat sync``."""
    from app.sync.cli import add_sign_in_arguments
    from app.vault.cli import add_new_vault_arguments

    commands.add_parser(
        "link",
        parents=unlock,
        help="show a pairing code that links a new device to this account (no passphrase "
        "needed there)",
    ).set_defaults(handler=_link)

    join = commands.add_parser(
        "join",
        help="link this device to your sync account with a pairing code from `sync link`",
    )
    join.add_argument(
        "code", help="the pairing code `hushchat sync link` shows on the other device"
    )
    join.add_argument("--server", required=True, metavar="URL", help="the sync server")
    add_sign_in_arguments(join)
    join.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read this device's vault passphrase (then a local account's password) from "
        "standard input",
    )
    join.add_argument("--device-name", help="how this device is listed (default: host name)")
    add_new_vault_arguments(join)  # for the vault a profile without one gets
    join.set_defaults(handler=_join, recovery_code=False)


# ----------------------------------------------------------------- the existing device


def _link(args: argparse.Namespace) -> int:
    from app.sync.cli import _run

    _run(args, _offer)
    return ExitCode.OK


async def _offer(session: Session) -> None:
    from app.sync.cli import _signed_in
    from app.sync.pairing import CODE_LIFETIME, start_link

    account = await _signed_in(session)
    offer = await start_link(session.sync)
    print(offer.code, flush=True)
    print(
        f"\nOn the new device, run:\n\n    hushchat sync join {offer.code} --server "
        f"{account.server_url}\n\nand sign in there to the same account "
        f"({account.email or account.account_id}). The code works once, for "
        f"{CODE_LIFETIME / 60:.0f} minutes. Waiting (Ctrl+C cancels)...",
        file=sys.stderr,
        flush=True,
    )
    result = await offer.wait()
    name = result.device_id[:12]
    for device in await session.sync.client().devices():
        if device.id == result.device_id and device.name:
            name = f"{device.name} ({device.id[:12]})"
    print(
        f"Linked {name}: it holds this account's sync keys now and fetches the chats.",
        file=sys.stderr,
    )


# ----------------------------------------------------------------- the new device


def _join(args: argparse.Namespace) -> int:
    from app.sync.cli import _login_async
    from app.sync.pairing import PairingCode

    code = PairingCode.parse(args.code)  # a typo is reported before signing in
    return asyncio.run(
        _login_async(
            args,
            functools.partial(_receive, code),
            new_vault_prompt="new passphrase for this device's vault",
        )
    )


async def _receive(
    code: PairingCode, session: Session, args: argparse.Namespace, source: object, passphrase: str
) -> None:
    from app.sync.pairing import PairingError, join_with_code

    sync = session.sync
    account = await sync.account()
    assert account is not None
    who = account.email or account.account_id
    if await sync.is_set_up():
        report = await sync.sync_now()
        print(
            f"Signed in as {who}; this profile holds the account's keys already (nothing to "
            f"link); {report.pulled} changes fetched.",
            file=sys.stderr,
        )
        return
    print(f"Signed in as {who}; linking with the other device...", file=sys.stderr, flush=True)
    try:
        report = await join_with_code(sync, code)
    except PairingError:
        await sync.sign_out(revoke=True)
        print("This device was signed out again.", file=sys.stderr)
        raise
    print(
        f"Linked: joined the account's chats, Standard and Private ({report.pulled} records).",
        file=sys.stderr,
    )
