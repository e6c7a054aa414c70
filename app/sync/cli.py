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
from app.sync import pairing_cli

if TYPE_CHECKING:
    from pathlib import Path

    from app.session import Session
    from app.sync.account import SyncAccount
    from app.sync.client import SyncClient
    from app.sync.crypto import SyncKey
    from app.sync.dpop import DeviceKey
    from app.sync.protocol import RecoveryOut
    from app.sync.recovery import PendingRecovery

__all__ = ["register"]

SYNC_PASSWORD_ENV: Final = "HUSHCHAT_SYNC_PASSWORD"  # noqa: S105 - a variable name
_Finish = Callable[["Session", argparse.Namespace, object, str], Awaitable[None]]


def add_sign_in_arguments(
    parser: argparse.ArgumentParser,
    *,
    prefix: str = "",
    stdin_text: str = "the line after the passphrase with --passphrase-stdin",
) -> None:
    """How to sign in: ``--no-browser``, ``--device`` or ``--local EMAIL`` (default: the
    browser); ``prefix`` starts each help text (``"with --server: "``), ``stdin_text``
    says where a local account's password is read with ``--passphrase-stdin``."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--no-browser",
        action="store_true",
        help=f"{prefix}print the sign-in address on stderr instead of opening a browser",
    )
    how.add_argument(
        "--device",
        action="store_true",
        help=f"{prefix}sign in with a code entered on another device (no browser here)",
    )
    how.add_argument(
        "--local",
        metavar="EMAIL",
        help=f"{prefix}a local account of the server (password from a prompt, "
        f"{SYNC_PASSWORD_ENV} or {stdin_text})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat sync …``."""
    from app.vault.cli import add_new_vault_arguments, unlock_parent_parsers

    unlock = unlock_parent_parsers()
    sync = subparsers.add_parser("sync", help="sync chats with your own Hushchat sync server")
    commands = sync.add_subparsers(title="sync commands", metavar="COMMAND", required=True)

    login = commands.add_parser(
        "login", help="sign in to a sync server and sync this profile's chats"
    )
    login.add_argument("--server", required=True, metavar="URL", help="the sync server")
    add_sign_in_arguments(login)
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
    add_new_vault_arguments(login)  # for the vault a profile without one gets
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
    pairing_cli.register(commands, unlock)  # `sync link` and `sync join CODE`
    _register_escrow_and_recovery(commands, unlock)


# ----------------------------------------------------------------- login


def _login(args: argparse.Namespace) -> int:
    return asyncio.run(_login_async(args))


async def _login_async(
    args: argparse.Namespace,
    finish: _Finish | None = None,
    new_vault_prompt: str = "passphrase of your sync account",
) -> int:
    """Sign in, create or unlock the vault, keep the account; then ``finish`` (default:
    set up or join with the passphrase; ``sync join`` links with a pairing code)."""
    from app.session import Session
    from app.vault.cli import PASSPHRASE_ENV, SecretSource, kdf_from_args
    from app.vault.errors import WrongSecretError
    from app.vault.profile import resolve_profile_dir

    session = Session(
        load(args), resolve_profile_dir(getattr(args, "profile", None)), kdf=kdf_from_args(args)
    )
    source = SecretSource(args)
    try:
        new_device = not session.vault_exists
        if new_device:  # the vault made with it must not hold a typo: typed twice
            passphrase = source.new_passphrase(
                PASSPHRASE_ENV, allow_weak=args.allow_weak_passphrase, what=new_vault_prompt
            )
        else:
            passphrase = source.current()
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
        try:
            await (finish or _set_up_or_join)(session, args, source, passphrase)
        except WrongSecretError:
            if new_device:
                await _discard_new_vault(session)
            raise
    finally:
        await session.aclose()
    return ExitCode.OK


async def _discard_new_vault(session: Session) -> None:
    """Remove the vault this command created a moment ago with a passphrase that does not
    open the account's keys (it holds nothing yet), so that running the command again
    with the right one starts from a profile without a vault."""
    import shutil
    from datetime import UTC

    from app.sync.recovery import set_session_vault_aside

    aside = await set_session_vault_aside(session, datetime.now(UTC))
    if aside is not None:
        await session.runner.blocking(shutil.rmtree, aside)
    print(
        "The vault this command created for this device was removed again (it held nothing yet).",
        file=sys.stderr,
    )


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


async def _sign_in(
    args: argparse.Namespace, password: str | None, device_key: DeviceKey | None = None
) -> SyncAccount:
    from app.sync import login

    name = args.device_name or login.default_device_name()
    if args.local:
        assert password is not None
        return await login.sign_in_local(
            args.server, args.local, password, device_name=name, device_key=device_key
        )
    if args.device:
        return await login.sign_in_with_device_code(
            args.server, device_name=name, device_key=device_key
        )
    return await login.sign_in_with_browser(
        args.server, device_name=name, no_browser=args.no_browser, device_key=device_key
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
        await _print_escrow_and_recoveries(session, me.cursor)

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


# ----------------------------------------------------------------- escrow and recovery

ESCROW_WARNING: Final = (
    "Escrow keeps your Standard sync key on the sync server, sealed to the server's escrow "
    "key, so that `hushchat vault recover --server URL` can bring your Standard chats back "
    "if you lose both your passphrase and your recovery code. Whoever holds the server's "
    "escrow key file (with its key-encryption key) and its database can read your Standard "
    "synced chats. Private chats are never escrowed: nobody but you can read them."
)


def _register_escrow_and_recovery(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    unlock: list[argparse.ArgumentParser],
) -> None:
    """``sync escrow on|off|status`` and ``sync recovery approve|cancel ID``."""
    escrow = commands.add_parser(
        "escrow",
        parents=unlock,
        help="whether the server keeps your Standard sync key for recovery (default: on)",
        description=ESCROW_WARNING,
    )
    escrow.add_argument("setting", choices=("on", "off", "status"))
    escrow.set_defaults(handler=_escrow)
    recovery = commands.add_parser(
        "recovery",
        parents=unlock,
        help="cancel or approve a recovery of your Standard chats started on a new device",
    )
    recovery.add_argument("action", choices=("cancel", "approve"))
    recovery.add_argument("id", help="the recovery id `hushchat sync status` shows")
    recovery.set_defaults(handler=_recovery)


async def _pending_recoveries(session: Session, cursor: int) -> list[RecoveryOut]:
    """The account's recoveries in progress (from a changes answer: contract §7)."""
    page = await session.sync.client().changes(cursor, limit=1)
    return [r for r in page.recoveries if r.status in ("pending", "ready")]


def _print_recoveries(recoveries: list[RecoveryOut], this_device: str) -> None:
    for recovery in recoveries:
        who = "this device" if recovery.device_id == this_device else recovery.device_id[:12]
        print(
            f"RECOVERY {recovery.status.upper()}: {recovery.id} — device {who} started "
            f"recovering your Standard chats from the escrow at {_when(recovery.created_at)}; "
            f"it can complete from {_when(recovery.not_before)} (expires "
            f"{_when(recovery.expires_at)})."
        )
        if recovery.device_id != this_device:
            print(f"  not you? hushchat sync recovery cancel {recovery.id}")
            print(f"  you?     hushchat sync recovery approve {recovery.id}  (completes at once)")


async def _print_escrow_and_recoveries(session: Session, cursor: int) -> None:
    account = await _signed_in(session)
    if await session.sync.is_set_up():
        engine = await session.sync.engine()
        if await engine.is_standard_only():
            print(
                "          Standard only (recovered from the escrow): Private chats of "
                "the account cannot be read here"
            )
        off, waiting, done = await engine.escrow_state()
        if off:
            print("escrow:   off (`hushchat sync escrow on` to turn it on)")
        elif waiting:
            print("escrow:   on; the current Standard key is sent with the next sync")
        else:
            print(f"escrow:   on (Standard key {done or '?'} escrowed; Private never)")
    _print_recoveries(await _pending_recoveries(session, cursor), account.device_id)


def _escrow(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        await _signed_in(session)
        engine = await session.sync.engine()
        if args.setting == "off":
            await engine.set_escrow(False)
            print(
                "Escrow is off: the server no longer holds your Standard sync key, and "
                "pending recoveries were cancelled. Without your passphrase or recovery code "
                "your synced chats cannot be recovered now."
            )
            return
        if args.setting == "on":
            await engine.set_escrow(True)
            print("Escrow is on.")
            print(ESCROW_WARNING)
            return
        off, waiting, done = await engine.escrow_state()
        server = await session.sync.client().escrow_status()
        print(f"on this device: {'off' if off else 'on'}")
        if waiting:
            print(f"waiting to be escrowed: Standard key {waiting}")
        print(
            "on the server:  "
            + (f"Standard key {server.key_id} escrowed" if server.escrowed else "nothing escrowed")
            + (" (from this device)" if server.escrowed and server.key_id == done else "")
        )
        print(ESCROW_WARNING)

    _run(args, work)
    return ExitCode.OK


def _recovery(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        account = await _signed_in(session)
        client = session.sync.client()
        me = await client.me()
        known = await _pending_recoveries(session, me.cursor)
        matches = [r for r in known if r.id.startswith(args.id)]
        recovery_id = matches[0].id if len(matches) == 1 else args.id
        if args.action == "cancel":
            done = await client.cancel_recovery(recovery_id)
            print(
                f"cancelled recovery {done.id} (device {done.device_id[:12]}); it cannot "
                "complete now"
            )
        else:
            if any(r.id == recovery_id and r.device_id == account.device_id for r in known):
                raise UsageError(
                    "that recovery was started on this device: approve it from another "
                    "device of the account"
                )
            done = await client.approve_recovery(recovery_id)
            print(
                f"approved recovery {done.id}: device {done.device_id[:12]} can get your "
                "Standard sync key now"
            )

    _run(args, work)
    return ExitCode.OK


# ----------------------------------------------------------------- vault recover --server


def add_recover_server_arguments(recover: argparse.ArgumentParser) -> None:
    """``vault recover --server URL [--resume] [--no-wait]`` and the sign-in options."""
    recover.add_argument(
        "--server",
        metavar="URL",
        help="lost passphrase AND recovery code: recover the Standard chats from the sync "
        "server's escrow into a new vault (a new or empty profile; Private chats stay "
        "unreadable)",
    )
    recover.add_argument(
        "--resume",
        action="store_true",
        help="with --server: complete the recovery this profile started (signs in again)",
    )
    recover.add_argument(
        "--no-wait",
        action="store_true",
        help="with --server: start the recovery and exit; complete it later with --resume",
    )
    add_sign_in_arguments(
        recover,
        prefix="with --server: ",
        stdin_text="with --passphrase-stdin the line after the new passphrase (the "
        "first line when --no-wait starts a recovery)",
    )
    recover.add_argument("--device-name", help="with --server: how this device is listed")


def recover_from_server(args: argparse.Namespace) -> int:
    """``hushchat vault recover --server URL``: see ``app/sync/recovery.py``."""
    return asyncio.run(_recover_from_server(args))


async def _recover_from_server(args: argparse.Namespace) -> int:
    from app.session import Session
    from app.sync.client import SyncClient, check_server_url
    from app.sync.dpop import DeviceKey
    from app.sync.recovery import PendingRecovery, install_recovered_key, start_recovery
    from app.vault.cli import SecretSource, kdf_from_args
    from app.vault.profile import resolve_profile_dir
    from app.vault.vault import Vault

    profile = resolve_profile_dir(getattr(args, "profile", None))
    session = Session(load(args), profile, kdf=kdf_from_args(args))
    pending = PendingRecovery.load(profile)
    # A new vault made with the recovered key, interrupted before the key was installed:
    # --resume unlocks it with its (new) passphrase and finishes.
    finishing = session.vault_exists and args.resume and pending is not None and pending.recovered
    if session.vault_exists and not finishing:
        raise UsageError(
            f"{profile} already has a vault. `hushchat vault recover --server` is for a lost "
            "vault (passphrase and recovery code both lost) and makes a new one: run it with "
            "a new --profile. To set a new passphrase with your recovery code, run "
            "`hushchat vault recover` without --server."
        )
    if not finishing:
        Vault.check_can_create(profile)
    server = check_server_url(args.server)
    if args.resume and pending is None:
        raise UsageError(
            "No recovery was started in this profile: start one with "
            "`hushchat vault recover --server URL`."
        )
    if pending is not None and not args.resume:
        raise UsageError(
            f"A recovery is in progress in this profile ({pending.recovery_id}): complete it "
            f"with `hushchat vault recover --server {pending.server_url} --resume`, or delete "
            f"{PendingRecovery.path(profile)} to start over."
        )
    if pending is not None and pending.server_url != server:
        raise UsageError(f"The recovery in progress is with {pending.server_url}, not {server}.")
    source = SecretSource(args)
    if finishing:
        passphrase: str | None = source.current("passphrase of the new vault")
    elif args.no_wait and pending is None:
        passphrase = None
    else:
        passphrase = source.new_passphrase(allow_weak=args.allow_weak_passphrase)
    password = _local_password(args, source) if args.local else None
    device_key = DeviceKey.from_pem(pending.device_key_pem) if pending else DeviceKey.generate()
    account = await _sign_in(args, password, device_key)
    if pending is not None and account.account_id != pending.account_id:
        raise UsageError(
            "You signed in to another account than the one the recovery was started for."
        )
    async with SyncClient(account) as client:
        if pending is None:
            pending = await start_recovery(client, profile, device_key_pem=device_key.to_pem())
            print(
                f"Recovery {pending.recovery_id} started. It can complete after "
                f"{_when(pending.not_before)} (expires {_when(pending.expires_at)}). Your "
                "other devices and your e-mail address were told: from any signed-in device "
                f"it can be cancelled (`hushchat sync recovery cancel {pending.recovery_id}`) "
                "or approved at once (`… approve`).",
                file=sys.stderr,
            )
            if args.no_wait:
                print(
                    f"Complete it later with: hushchat vault recover --server {server} --resume",
                    file=sys.stderr,
                )
                return ExitCode.OK
        key = await _complete(client, pending, profile)
    assert passphrase is not None
    try:
        if finishing:
            await session.open_vault()
            await session.unlock_with_passphrase(passphrase)
        else:
            code = await session.create_vault(passphrase)
            print(f"Created a new vault in {profile}.")
            print("Recovery code (shown only now; write it down and keep it somewhere safe):")
            print()
            print(code.formatted())
            print()
        # Installed: from here `hushchat sync now` fetches whatever this run does not.
        recovered = await install_recovered_key(session, account, key, profile)
        print(
            f"Recovered the Standard sync key: {recovered.chats} Standard chats are back "
            f"({recovered.pulled} records fetched). Private chats stay unreadable: their key "
            "was never escrowed, and only your old passphrase or recovery code opens it.",
            file=sys.stderr,
        )
    finally:
        await session.aclose()
    return ExitCode.OK


async def _complete(client: SyncClient, pending: PendingRecovery, profile: Path) -> SyncKey:
    """Wait for the server's answer and open it; a recovery that can no longer complete
    (cancelled, expired) is forgotten here with a message that says what to do."""
    from app.sync.recovery import RecoveryEndedError, complete_or_forget

    def waiting(slug: str, seconds: float) -> None:
        why = (
            "the recovery delay is running"
            if slug == "recovery-delay"
            else "the server's escrow step has not answered yet"
        )
        print(f"Waiting: {why}; asking again in {seconds:.0f} s…", file=sys.stderr, flush=True)

    try:
        return await complete_or_forget(client, pending, profile, on_wait=waiting)
    except RecoveryEndedError as error:
        raise RecoveryEndedError(
            f"{error} Start a new one with `hushchat vault recover --server URL` if it was you."
        ) from error.__cause__
