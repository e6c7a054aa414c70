"""``hushchat sync login|status|now|logout|devices|revoke``: sync from the command line.

``sync login --server URL`` signs this profile in (the browser with a loopback redirect;
``--no-browser`` prints the address instead; ``--device`` shows a code to enter on another
device; ``--local EMAIL`` uses the server's own accounts), keeps the account in the vault,
then either publishes the account's sync keys (the first device) or fetches them and every
chat (another device). Both need the passphrase: it is what lets a new device open the
sync keys, so it is read once here (prompt, ``--passphrase-stdin`` or
``HUSHCHAT_PASSPHRASE``) and used to unlock this profile too.

On a profile without a vault, ``sync login`` is the "new device" path: it signs in,
creates the local vault with the account's passphrase, fetches the keys and the chats,
and prints this device's own recovery code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from app.errors import ExitCode, UsageError
from app.runtime import load, open_session

if TYPE_CHECKING:
    from app.session import Session
    from app.sync.account import SyncAccount

__all__ = ["register"]

SYNC_PASSWORD_ENV: Final = "HUSHCHAT_SYNC_PASSWORD"  # noqa: S105 - a variable name


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat sync …``."""
    from app.vault.cli import add_kdf_arguments, unlock_parent_parsers

    unlock = unlock_parent_parsers()
    sync = subparsers.add_parser("sync", help="sync chats with your own Hushchat sync server")
    commands = sync.add_subparsers(title="sync commands", metavar="COMMAND", required=True)

    login = commands.add_parser(
        "login", help="sign in to a sync server and sync this profile's chats"
    )
    login.add_argument("--server", required=True, metavar="URL", help="the sync server")
    how = login.add_mutually_exclusive_group()
    how.add_argument(
        "--no-browser",
        action="store_true",
        help="print the sign-in address on stderr instead of opening a browser",
    )
    how.add_argument(
        "--device",
        action="store_true",
        help="sign in with a code entered on another device (no browser here)",
    )
    how.add_argument(
        "--local",
        metavar="EMAIL",
        help=f"a local account of the server (password from a prompt, {SYNC_PASSWORD_ENV} or "
        "the line after the passphrase with --passphrase-stdin)",
    )
    login.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read the passphrase (then a local account's password) from standard input",
    )
    login.add_argument(
        "--recovery-code",
        action="store_true",
        help="first device: also let the recovery code open the sync keys (it is asked "
        "for; HUSHCHAT_RECOVERY_CODE works too)",
    )
    login.add_argument("--device-name", help="how this device is listed (default: host name)")
    add_kdf_arguments(login)  # for the vault a profile without one gets
    login.set_defaults(handler=_login)

    commands.add_parser(
        "status", parents=unlock, help="the account and the last sync"
    ).set_defaults(handler=_status)
    commands.add_parser("now", parents=unlock, help="push and pull once, now").set_defaults(
        handler=_now
    )
    logout = commands.add_parser(
        "logout", parents=unlock, help="sign this device out (its chats stay here)"
    )
    logout.add_argument(
        "--keep-device",
        action="store_true",
        help="do not revoke this device on the server (e.g. the server is gone)",
    )
    logout.set_defaults(handler=_logout)
    commands.add_parser(
        "devices", parents=unlock, help="the devices signed in to the account"
    ).set_defaults(handler=_devices)
    revoke = commands.add_parser(
        "revoke", parents=unlock, help="sign a device out for good (a lost laptop)"
    )
    revoke.add_argument("id", help="the device id (or its first characters) from `sync devices`")
    revoke.set_defaults(handler=_revoke)


# ----------------------------------------------------------------- login


def _login(args: argparse.Namespace) -> int:
    return asyncio.run(_login_async(args))


async def _login_async(args: argparse.Namespace) -> int:
    from app.session import Session
    from app.vault.cli import SecretSource, kdf_from_args
    from app.vault.profile import resolve_profile_dir

    session = Session(
        load(args), resolve_profile_dir(getattr(args, "profile", None)), kdf=kdf_from_args(args)
    )
    source = SecretSource(args)
    try:
        new_device = not session.vault_exists
        passphrase = source.current(
            "passphrase of your sync account" if new_device else "passphrase"
        )
        password = _local_password(args, source) if args.local else None
        account = await _sign_in(args, password)
        if new_device:
            code = await session.create_vault(passphrase)
            print(
                "Created this device's vault. Its recovery code (write it down; it is "
                f"shown only now):\n\n    {code}\n",
                file=sys.stderr,
            )
        else:
            await session.open_vault()
            await session.unlock_with_passphrase(passphrase)
        await session.sync.sign_in(account)
        await _set_up_or_join(session, args, source, passphrase)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, session.close)
    return ExitCode.OK


def _local_password(args: argparse.Namespace, source: object) -> str:
    from app.vault.cli import SecretSource

    assert isinstance(source, SecretSource)
    if args.passphrase_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--passphrase-stdin: expected the account password on the next line")
        return line.rstrip("\r\n")
    value = os.environ.get(SYNC_PASSWORD_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UsageError(
            f"No terminal to ask for the password of {args.local}; pass --passphrase-stdin "
            f"(passphrase, then password) or set {SYNC_PASSWORD_ENV}."
        )
    import getpass

    return getpass.getpass(f"Password of {args.local} on the sync server: ")


async def _sign_in(args: argparse.Namespace, password: str | None) -> SyncAccount:
    from app.sync import login

    name = args.device_name or login.default_device_name()
    if args.local:
        assert password is not None
        return await login.sign_in_local(args.server, args.local, password, device_name=name)
    if args.device:
        return await login.sign_in_with_device_code(args.server, device_name=name)
    return await login.sign_in_with_browser(
        args.server, device_name=name, no_browser=args.no_browser
    )


async def _set_up_or_join(
    session: Session, args: argparse.Namespace, source: object, passphrase: str
) -> None:
    from app.sync.crypto import WrongKeySecretError
    from app.sync.engine import SyncNotSetUpError
    from app.vault.errors import WrongSecretError

    sync = session.sync
    account = await sync.account()
    assert account is not None
    who = account.email or account.account_id
    if await sync.is_set_up():
        report = await sync.sync_now()
        print(f"Signed in as {who}; {report.pulled} changes fetched.", file=sys.stderr)
        return
    try:
        report = await sync.join(passphrase=passphrase)
    except SyncNotSetUpError:
        recovery = _recovery_secret(args, source) if args.recovery_code else None
        kdf = await sync.keys_record_kdf(session.slots(), session.kdf)
        await sync.set_up(passphrase=passphrase, recovery_secret=recovery, kdf=kdf)
        report = await sync.sync_now()
        print(
            f"Signed in as {who}. This is the account's first device: its sync keys are on "
            f"the server now, wrapped for your passphrase"
            f"{' and recovery code' if recovery else ''}; {report.pushed} records sent.",
            file=sys.stderr,
        )
        return
    except WrongKeySecretError as error:
        await sync.sign_out(revoke=True)
        raise WrongSecretError(
            "This passphrase does not open the account's sync keys: on a second device, "
            "unlock with (or create the vault with) the passphrase of the first one. "
            "This device was signed out again."
        ) from error
    print(
        f"Signed in as {who}; joined the account's chats ({report.pulled} records).",
        file=sys.stderr,
    )


def _recovery_secret(args: argparse.Namespace, source: object) -> bytes:
    from app.vault.cli import RECOVERY_CODE_ENV, SecretSource
    from app.vault.recovery_code import RecoveryCode

    assert isinstance(source, SecretSource)
    return RecoveryCode.parse(source.current("recovery code", RECOVERY_CODE_ENV)).secret


# ----------------------------------------------------------------- the other commands


def _run(args: argparse.Namespace, work: Callable[[Session], Awaitable[None]]) -> None:
    async def main() -> None:
        async with open_session(args) as session:
            await work(session)

    asyncio.run(main())


async def _signed_in(session: Session) -> SyncAccount:
    from app.sync.service import NotSignedInError

    account = await session.sync.account()
    if account is None:
        raise NotSignedInError(
            "This profile is not signed in to a sync server: run `hushchat sync login "
            "--server URL`."
        )
    return account


def _status(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        account = await session.sync.account()
        if account is None:
            print("not signed in (hushchat sync login --server URL)")
            return
        print(f"server:   {account.server_url}")
        print(f"account:  {account.email or account.account_id}")
        print(f"device:   {account.device_name or '-'} ({account.device_id})")
        set_up = await session.sync.is_set_up()
        print(f"keys:     {'on this device' if set_up else 'not set up (sync login again)'}")
        me = await session.sync.client().me()
        print(f"server cursor: {me.cursor} (changes the server holds for the account)")

    _run(args, work)
    return ExitCode.OK


def _now(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        await _signed_in(session)
        report = await session.sync.sync_now()
        print(
            f"sent {report.pushed}, fetched {report.pulled}, merged {report.conflicts}"
            + (f", refused {report.tampered} damaged or altered" if report.tampered else "")
            + (f", {report.deferred} waiting for Private to be unlocked" if report.deferred else "")
        )

    _run(args, work)
    return ExitCode.OK


def _logout(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        account = await _signed_in(session)
        await session.sync.sign_out(revoke=not args.keep_device)
        print(f"signed out of {account.server_url}; the chats stay on this device")

    _run(args, work)
    return ExitCode.OK


def _devices(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        account = await _signed_in(session)
        for device in await session.sync.client().devices():
            here = "*" if device.id == account.device_id else " "
            state = "revoked" if device.revoked_at else _when(device.last_seen_at)
            print(f"{device.id[:12]}{here} {state:<16}  {device.name or '-'}")

    _run(args, work)
    return ExitCode.OK


def _revoke(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        account = await _signed_in(session)
        devices = await session.sync.client().devices()
        matches = [d for d in devices if d.id.startswith(args.id)]
        if len(matches) != 1:
            raise UsageError(
                f"{'no' if not matches else 'more than one'} device starts with {args.id!r}; "
                "`hushchat sync devices` lists them"
            )
        (device,) = matches
        if device.id == account.device_id:
            raise UsageError("that is this device: use `hushchat sync logout`")
        await session.sync.client().revoke(device.id)
        print(f"revoked {device.id[:12]} ({device.name or 'unnamed'})")

    _run(args, work)
    return ExitCode.OK


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")
