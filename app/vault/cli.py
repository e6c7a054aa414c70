"""The ``hushchat vault`` command: create, inspect, unlock-check and manage the vault.

Secrets come from a TTY prompt (never echoed), or for scripts from standard input
(``--passphrase-stdin``: one secret per line, in the order the command asks for them)
or the environment (``HUSHCHAT_PASSPHRASE`` for the current passphrase,
``HUSHCHAT_NEW_PASSPHRASE`` for a new one, ``HUSHCHAT_RECOVERY_CODE``). Failures are
raised as ``app.errors`` exceptions; the top-level CLI prints one line and exits with
the error's code (4 for a wrong secret or any vault problem).

A new passphrase scoring below 3 of 4 (zxcvbn) is refused unless
``--allow-weak-passphrase`` is given. ``rekey`` rotates every key (``Vault.rotate_keys``):
it says which key slots it drops before dropping them, and prints the new recovery
code; ``passwd --rotate`` and ``remove-slot --rotate`` end with the same rotation.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from app.errors import HushchatError, UsageError
from app.vault.errors import VaultLockedError
from app.vault.kdf import KdfParams
from app.vault.profile import resolve_profile_dir
from app.vault.recovery_code import RecoveryCode
from app.vault.strength import require_strong_passphrase
from app.vault.vault import Rotation, SlotInfo, TouchedKey, Vault

if TYPE_CHECKING:
    from app.session import Session

__all__ = [
    "SecretSource",
    "add_new_vault_arguments",
    "kdf_from_args",
    "main",
    "register",
    "unlock_parent_parsers",
    "unlock_session",
    "unlocked_vault",
]

PASSPHRASE_ENV: Final = "HUSHCHAT_PASSPHRASE"  # noqa: S105 - a variable name
NEW_PASSPHRASE_ENV: Final = "HUSHCHAT_NEW_PASSPHRASE"  # noqa: S105 - a variable name
RECOVERY_CODE_ENV: Final = "HUSHCHAT_RECOVERY_CODE"
UNLOCK_METHODS: Final = ("passphrase", "recovery-code", "security-key", "keychain", "touch-id")


class SecretSource:
    """Reads secrets from stdin lines, the environment, or a hidden TTY prompt."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._from_stdin = bool(getattr(args, "passphrase_stdin", False))

    def _stdin_line(self, what: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise UsageError(f"--passphrase-stdin: expected the {what} on the next line of stdin.")
        return line.rstrip("\r\n")

    def _prompt(self, prompt: str, what: str, env: str) -> str:
        if not sys.stdin.isatty():
            raise UsageError(
                f"No terminal to ask for the {what}; pass --passphrase-stdin or set {env}."
            )
        return getpass.getpass(prompt)

    def current(self, what: str = "passphrase", env: str = PASSPHRASE_ENV) -> str:
        """The secret that unlocks the vault now.

        With no way to get it (no terminal, no stdin line asked for, no variable set)
        the vault stays locked: VaultLockedError (exit 4), saying how to unlock.
        """
        if self._from_stdin:
            return self._stdin_line(what)
        value = os.environ.get(env)
        if value:
            return value
        if not sys.stdin.isatty():
            raise VaultLockedError(
                f"The vault is locked, and without a terminal Hushchat cannot ask for the "
                f"{what}. Run `hushchat unlock` first, or pass --passphrase-stdin, or set {env}."
            )
        return getpass.getpass(f"Vault {what}: ")

    @property
    def is_interactive(self) -> bool:
        """Whether questions can be asked on a terminal (not scripted through stdin)."""
        return not self._from_stdin and sys.stdin.isatty()

    def new_passphrase(
        self,
        env: str = NEW_PASSPHRASE_ENV,
        *,
        allow_weak: bool = False,
        what: str = "new passphrase",
    ) -> str:
        """A new passphrase, confirmed when typed; a weak one (zxcvbn score below 3) is
        refused with the reason unless ``allow_weak`` (``--allow-weak-passphrase``).
        ``what`` names it in the prompts."""
        if self._from_stdin:
            value = self._stdin_line(what)
        elif os.environ.get(env):
            value = os.environ[env]
        else:
            value = self._prompt(f"{what[:1].upper()}{what[1:]}: ", what, env)
            if getpass.getpass(f"Repeat the {what}: ") != value:
                raise UsageError("The two passphrases differ; nothing was changed.")
        if not value:
            raise UsageError("The new passphrase is empty; nothing was changed.")
        strength = require_strong_passphrase(
            value, allow_weak=allow_weak, override="pass --allow-weak-passphrase to use it anyway"
        )
        if strength.is_weak:
            print(f"warning: {strength.message()}", file=sys.stderr)
        return value


class _TerminalPrompts:
    """Security-key prompts on the terminal."""

    def prompt_touch(self) -> None:
        print("Touch your security key…", file=sys.stderr, flush=True)

    def request_pin(self) -> str | None:
        if not sys.stdin.isatty():
            return None
        return getpass.getpass("Security key PIN: ") or None


def _profile(args: argparse.Namespace) -> Path:
    return resolve_profile_dir(getattr(args, "profile", None))


@contextlib.contextmanager
def _unlocked(args: argparse.Namespace) -> Iterator[Vault]:
    with _unlocked_keeping_passphrase(args) as (vault, _passphrase):
        yield vault


@contextlib.contextmanager
def _unlocked_keeping_passphrase(args: argparse.Namespace) -> Iterator[tuple[Vault, str | None]]:
    """The unlocked vault and, when it was unlocked with it, the passphrase typed (a key
    rotation keeps the passphrase slot with it instead of asking again)."""
    secrets_in = SecretSource(args)
    vault = Vault.open(_profile(args))
    passphrase: str | None = None
    try:
        method = args.unlock_with
        if method == "passphrase":
            passphrase = secrets_in.current()
            vault.unlock_with_passphrase(passphrase)
        elif method == "recovery-code":
            vault.unlock_with_recovery_code(secrets_in.current("recovery code", RECOVERY_CODE_ENV))
        elif method == "security-key":
            from app.vault.security_key import SecurityKey  # fido2 loads only when needed

            vault.unlock_with_security_key(SecurityKey.discover(_TerminalPrompts()))
        elif method == "keychain":
            vault.unlock_with_keychain()
        else:
            vault.unlock_with_touch_id()
        yield vault, passphrase
    finally:
        vault.close()


def add_weak_passphrase_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-weak-passphrase``: accept a new passphrase the strength check refuses."""
    parser.add_argument(
        "--allow-weak-passphrase",
        action="store_true",
        help="accept a new passphrase that zxcvbn scores below 3 of 4 (refused otherwise)",
    )


def add_new_vault_arguments(parser: argparse.ArgumentParser) -> None:
    """What a command that may create a vault takes: ``--allow-weak-passphrase`` and
    ``--kdf-memory-mib``/``--kdf-iterations``/``--kdf-parallelism``."""
    add_weak_passphrase_argument(parser)
    parser.add_argument("--kdf-memory-mib", type=int, help="Argon2id memory (MiB, at least 64)")
    parser.add_argument("--kdf-iterations", type=int, help="Argon2id passes (at least 3)")
    parser.add_argument("--kdf-parallelism", type=int, help="Argon2id lanes (at least 4)")


def kdf_from_args(args: argparse.Namespace) -> KdfParams | None:
    values = (args.kdf_memory_mib, args.kdf_iterations, args.kdf_parallelism)
    if all(value is None for value in values):
        return None
    if any(value is None for value in values):
        raise UsageError(
            "Give all of --kdf-memory-mib, --kdf-iterations and --kdf-parallelism, or none "
            "(then they are calibrated for this machine)."
        )
    memory, iterations, parallelism = (int(v) for v in values)
    return KdfParams(memory * 1024, iterations, parallelism)


def _cmd_init(args: argparse.Namespace) -> int:
    kdf = kdf_from_args(args)
    Vault.check_can_create(_profile(args))  # before asking for a passphrase
    passphrase = SecretSource(args).new_passphrase(
        env=PASSPHRASE_ENV, allow_weak=args.allow_weak_passphrase
    )
    if kdf is None:
        print("Calibrating the key derivation for this machine…", file=sys.stderr)
    vault, code = Vault.create(_profile(args), passphrase, kdf=kdf)
    vault.close()
    print(f"Created a vault in {vault.profile_dir}.")
    print("Recovery code (shown only now; write it down and keep it somewhere safe):")
    print()
    print(code.formatted())
    print()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = Vault.status(_profile(args))
    print(f"profile: {status.profile_dir}")
    print(f"in use by another process: {'yes' if status.in_use else 'no'}")
    for db in status.databases:
        state = f"{db.size} bytes" if db.exists else "MISSING"
        print(f"database {db.tier}: {db.file}, {state}, key generation {db.generation}")
    if status.rekey_pending:
        print("a rekey was interrupted; the next unlock finishes it")
    print(f"key slots: {len(status.slots)}")
    for slot in status.slots:
        opens = "" if slot.opens_everything else ", opens Standard chats only"
        print(f"  {slot.id}  {slot.kind:<12}  {slot.label}  ({slot.detail}{opens})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    with _unlocked(args) as vault:
        checked = vault.verify_databases()
    if len(checked) > 1:
        print("ok: the secret opens the vault and both databases pass their integrity checks")
    else:
        print(
            "ok: the secret opens the Standard tier and its database passes its integrity "
            "checks (it does not open Private chats: the keychain and Touch ID open Standard "
            "only)"
        )
    return 0


_ROTATE_HINT: Final = (
    "hint: an old copy of vault.json still opens this vault with the {what}; "
    "'hushchat vault rekey' rotates every key so that such copies open nothing."
)


def _cmd_passwd(args: argparse.Namespace) -> int:
    with _unlocked(args) as vault:
        new = SecretSource(args).new_passphrase(allow_weak=args.allow_weak_passphrase)
        if args.rotate:
            return _rotate(args, vault, passphrase=new)
        vault.change_passphrase(new)
    print("Passphrase changed.")
    print(
        _ROTATE_HINT.format(what="old passphrase") + " (Or use 'passwd --rotate'.)", file=sys.stderr
    )
    return 0


def _cmd_slots(args: argparse.Namespace) -> int:
    status = Vault.status(_profile(args))
    for slot in status.slots:
        print(f"{slot.id}\t{slot.kind}\t{slot.label}\t{slot.created}\t{slot.detail}")
    return 0


def _cmd_add_key(args: argparse.Namespace) -> int:
    from app.vault.security_key import SecurityKey

    with _unlocked(args) as vault:
        key = SecurityKey.discover(_TerminalPrompts())
        info = vault.add_security_key(key, label=args.label)
    print(f"Added security-key slot {info.id}.")
    return 0


def _cmd_add_keychain(args: argparse.Namespace) -> int:
    with _unlocked(args) as vault:
        info = vault.add_keychain(label=args.label)
    print(f"Added keychain slot {info.id}; this device now unlocks the vault without a secret.")
    return 0


def _last_passphrase_warning(status_slots: Collection[SlotInfo], slot_id: str) -> str | None:
    """The warning for removing the only passphrase slot, or None for any other slot."""
    passphrases = [slot for slot in status_slots if slot.kind == "passphrase"]
    if len(passphrases) != 1 or passphrases[0].id != slot_id or len(status_slots) < 2:
        return None
    others = sorted({slot.kind for slot in status_slots if slot.id != slot_id})
    names = {
        "recovery": "the recovery code",
        "security-key": "your security keys",
        "keychain": "this device's keychain (Standard chats only)",
        "touch-id": "Touch ID (Standard chats only)",
    }
    remaining = ", ".join(names[kind] for kind in others if kind in names)
    return (
        "This is the vault's only passphrase: after removing it only "
        f"{remaining or 'the other key slots'} will unlock the vault."
    )


def _cmd_remove_slot(args: argparse.Namespace) -> int:
    slots = Vault.status(_profile(args)).slots
    warning = _last_passphrase_warning(slots, args.slot_id)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("Removing a key slot needs confirmation; add --yes in scripts.")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        answer = input(f"Remove key slot {args.slot_id}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing removed.")
            return 0
    with _unlocked_keeping_passphrase(args) as (vault, typed):
        if args.rotate:
            removed = next((slot for slot in vault.slots() if slot.id == args.slot_id), None)
            if removed is None:
                vault.remove_slot(args.slot_id)  # raises the not-found error
            assert removed is not None
            passphrase = None
            if removed.kind != "passphrase":
                passphrase = _passphrase_to_keep(args, vault, typed)
            return _rotate(
                args,
                vault,
                passphrase=passphrase,
                drop=(args.slot_id,),
                recovery_code=removed.kind != "recovery",
            )
        vault.remove_slot(args.slot_id)
    print(f"Removed key slot {args.slot_id}.")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        _ROTATE_HINT.format(what="removed slot's secret") + " (Or use 'remove-slot --rotate'.)",
        file=sys.stderr,
    )
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    if args.server is not None:
        from app.sync.cli import recover_from_server

        return recover_from_server(args)
    if args.resume or args.no_wait:
        raise UsageError("--resume and --no-wait go with --server URL.")
    source = SecretSource(args)
    vault = Vault.open(_profile(args))
    try:
        text = source.current("recovery code", RECOVERY_CODE_ENV)
        vault.unlock_with_recovery_code(RecoveryCode.parse(text))
        vault.change_passphrase(source.new_passphrase(allow_weak=args.allow_weak_passphrase))
        new_code = vault.regenerate_recovery_code() if args.new_recovery_code else None
    finally:
        vault.close()
    print("Passphrase set.")
    if new_code is not None:
        print("New recovery code (the old one no longer works; write this one down):")
        print()
        print(new_code.formatted())
        print()
    return 0


def _cmd_rekey(args: argparse.Namespace) -> int:
    with _unlocked_keeping_passphrase(args) as (vault, typed):
        return _rotate(args, vault, passphrase=_passphrase_to_keep(args, vault, typed))


def _passphrase_to_keep(args: argparse.Namespace, vault: Vault, typed: str | None) -> str | None:
    """The passphrase a rotation keeps: the one the vault was unlocked with, else asked for
    (and checked against the passphrase slot). None when the vault has no passphrase."""
    vault.require_vault_key()  # a keychain unlock cannot rotate: say so before asking
    if typed is not None:
        return typed
    if not any(slot.kind == "passphrase" for slot in vault.slots()):
        return None
    passphrase = SecretSource(args).current("passphrase (to keep it after the rotation)")
    vault.verify_passphrase(passphrase)
    return passphrase


def _touch_security_keys(
    args: argparse.Namespace, vault: Vault, drop: Collection[str]
) -> list[TouchedKey]:
    """On a terminal, ask for each enrolled security key whether to keep it, and touch it."""
    wanted = [slot for slot in vault.slots() if slot.kind == "security-key" and slot.id not in drop]
    if not wanted or not SecretSource(args).is_interactive:
        return []
    from app.vault.security_key import SecurityKey

    touched: list[TouchedKey] = []
    for slot in wanted:
        if any(item.slot_id == slot.id for item in touched):
            continue
        answer = input(
            f"Keep security key '{slot.label}' ({slot.id})? Plug it in, answer y, then touch "
            "it [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            continue
        item = vault.touch_security_key(SecurityKey.discover(_TerminalPrompts()))
        touched.append(item)
        print(f"Security key slot {item.slot_id} will be kept.", file=sys.stderr)
    return touched


def _rotate(
    args: argparse.Namespace,
    vault: Vault,
    *,
    passphrase: str | None,
    drop: Collection[str] = (),
    recovery_code: bool = True,
) -> int:
    """Rotate every key: say which slots go, confirm, rotate, show the new recovery code."""
    touched = _touch_security_keys(args, vault, drop)
    dropped = vault.rotation_drops(
        keep_passphrase=passphrase is not None,
        touched=[item.slot_id for item in touched],
        drop=drop,
        recovery_code=recovery_code,
    )
    unasked = [slot for slot in dropped if slot.id not in drop]
    if unasked:
        listed = "; ".join(f"{slot.id} ({slot.kind}, {slot.label})" for slot in unasked)
        print(
            f"The key rotation drops these key slots, whose secrets will open nothing: {listed}.",
            file=sys.stderr,
        )
        if not args.yes:
            if not SecretSource(args).is_interactive:
                raise UsageError(
                    "The key rotation would drop key slots (listed above); add --yes to drop "
                    "them. Nothing was changed."
                )
            if input("Rotate the keys and drop them? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing changed.")
                return 0
    rotation = vault.rotate_keys(
        passphrase=passphrase, touched=touched, drop=drop, recovery_code=recovery_code
    )
    _report_rotation(rotation)
    return 0


def _report_rotation(rotation: Rotation) -> None:
    print(
        "Keys rotated: a new vault key and new database keys. Old copies of vault.json and "
        "old secrets no longer open anything."
    )
    for slot in rotation.dropped:
        print(f"Dropped key slot {slot.id} ({slot.kind}, {slot.label}).")
    for slot in rotation.slots:
        print(f"Key slot {slot.id}: {slot.kind}, {slot.label}.")
    if rotation.recovery_code is not None:
        print("New recovery code (the old one no longer works; shown only now, write it down):")
        print()
        print(rotation.recovery_code.formatted())
        print()
    if rotation.unfinished is not None:
        print(f"warning: {rotation.unfinished}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``vault`` command and its subcommands to the top-level parser."""
    secrets_parent = argparse.ArgumentParser(add_help=False)
    secrets_parent.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read secrets from standard input, one per line, instead of prompting",
    )
    unlock_parent = argparse.ArgumentParser(add_help=False)
    unlock_parent.add_argument(
        "--unlock-with",
        choices=UNLOCK_METHODS,
        default="passphrase",
        help="how to unlock the vault for this command (default: passphrase)",
    )
    both = [secrets_parent, unlock_parent]

    vault = subparsers.add_parser(
        "vault",
        help="create and manage the encrypted vault",
        description="Create and manage the encrypted vault that holds your chats.",
    )
    commands = vault.add_subparsers(dest="vault_command", metavar="COMMAND", required=True)

    weak_parent = argparse.ArgumentParser(add_help=False)
    add_weak_passphrase_argument(weak_parent)
    yes_parent = argparse.ArgumentParser(add_help=False)
    yes_parent.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (scripts)"
    )
    rotate_help = (
        "then rotate every key (new vault and database keys, new recovery code; slots not "
        "renewed are dropped), so that old copies of vault.json open nothing"
    )

    init = commands.add_parser(
        "init",
        parents=[secrets_parent],
        help="create a vault and print its recovery code",
    )
    add_new_vault_arguments(init)
    init.set_defaults(handler=_cmd_init)

    commands.add_parser("status", help="describe the vault (no secret needed)").set_defaults(
        handler=_cmd_status
    )
    commands.add_parser(
        "verify", parents=both, help="check a secret and the databases (exit 0, or 4)"
    ).set_defaults(handler=_cmd_verify)
    passwd = commands.add_parser(
        "passwd", parents=[*both, weak_parent, yes_parent], help="change the passphrase"
    )
    passwd.add_argument("--rotate", action="store_true", help=rotate_help)
    passwd.set_defaults(handler=_cmd_passwd)
    commands.add_parser("slots", help="list the key slots (no secret needed)").set_defaults(
        handler=_cmd_slots
    )
    add_key = commands.add_parser("add-key", parents=both, help="enrol a FIDO2 security key")
    add_key.add_argument("--label", default="Security key", help="name shown in slot lists")
    add_key.set_defaults(handler=_cmd_add_key)
    add_keychain = commands.add_parser(
        "add-keychain", parents=both, help="remember the vault in this device's OS keychain"
    )
    add_keychain.add_argument("--label", default="This device's keychain")
    add_keychain.set_defaults(handler=_cmd_add_keychain)
    remove = commands.add_parser(
        "remove-slot", parents=[*both, yes_parent], help="remove a key slot"
    )
    remove.add_argument("slot_id", metavar="ID", help="slot id from 'vault slots'")
    remove.add_argument("--rotate", action="store_true", help=rotate_help)
    remove.set_defaults(handler=_cmd_remove_slot)
    recover = commands.add_parser(
        "recover",
        parents=[secrets_parent],
        help="use the recovery code to set a new passphrase (or, with --server, recover "
        "the Standard chats from the sync server's escrow into a new vault)",
    )
    recover.add_argument(
        "--new-recovery-code", action="store_true", help="also replace the recovery code"
    )
    from app.sync.cli import add_recover_server_arguments

    add_recover_server_arguments(recover)
    add_new_vault_arguments(recover)  # the new passphrase; the new vault with --server
    recover.set_defaults(handler=_cmd_recover)
    commands.add_parser(
        "rekey",
        parents=[*both, yes_parent],
        help="rotate every key: new vault and database keys (both databases re-encrypted), "
        "slots renewed for the secrets present, a new recovery code; old copies of "
        "vault.json open nothing afterwards",
    ).set_defaults(handler=_cmd_rekey)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m app.vault.cli``) mirroring the top-level CLI."""
    parser = argparse.ArgumentParser(prog="hushchat")
    parser.add_argument("--profile", default=None, help="profile directory")
    parser.add_argument("--config", default=None, help="configuration file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except HushchatError as error:
        if args.debug:
            raise
        print(f"hushchat: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("hushchat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


# --- for other commands that need the vault unlocked (chat, chats) --------------------------


def unlock_parent_parsers() -> list[argparse.ArgumentParser]:
    """Parent parsers adding ``--passphrase-stdin`` and ``--unlock-with`` to a command
    that only needs the chats (an unlock agent can serve it)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read the vault secret from the first line of standard input",
    )
    parent.add_argument(
        "--unlock-with",
        choices=UNLOCK_METHODS,
        default=None,
        help="how to unlock the vault for this command (default: a running `hushchat "
        "unlock` agent or unlocked window, else the passphrase)",
    )
    return [parent]


async def unlock_session(session: Session, args: argparse.Namespace) -> None:
    """Unlock ``session`` as a command's arguments say.

    Without ``--unlock-with`` or ``--passphrase-stdin`` a running unlock agent is
    asked first; a command that names its secret source always uses it (so a
    passphrase piped on stdin is never left unread to be taken for input).
    """
    method = getattr(args, "unlock_with", None)
    from_stdin = bool(getattr(args, "passphrase_stdin", False))
    if method is None and not from_stdin and await session.unlock_with_agent():
        return
    await session.open_vault()  # a profile in use is reported before a secret is asked
    source = SecretSource(args)
    method = method or "passphrase"
    if method == "passphrase":
        await session.unlock_with_passphrase(source.current())
    elif method == "recovery-code":
        await session.unlock_with_recovery_code(source.current("recovery code", RECOVERY_CODE_ENV))
    elif method == "security-key":
        key = await session.find_security_key(_TerminalPrompts())
        await session.unlock_with_security_key(key)
    elif method == "keychain":
        await session.unlock_with_keychain()
    else:
        await session.unlock_with_touch_id()


def unlocked_vault(args: argparse.Namespace) -> contextlib.AbstractContextManager[Vault]:
    """The profile's vault, unlocked as ``args`` say (never by an agent), closed on exit."""
    return _unlocked(args)
