"""``hushchat chat`` and ``hushchat chats …``: chatting and managing chats from a terminal.

``chat`` streams the answer to stdout and prints the chat id on stderr. A
provider failure exits 3 with the partial answer kept (marked ``error``; an
Ephemeral chat keeps nothing, and its error line says so); the
tier's provider policy refusing exits 5; a locked vault or wrong secret exits 4.
Ctrl-C stops the answer and keeps what arrived (marked ``stopped``). ``--attach FILE``
(repeatable) sends files with the message; a file that cannot be attached exits 2 with
one line and nothing saved; the labels of the document excerpts the answer was given are
printed after it on stderr (``sources: report.pdf, p. 3; ...``). ``--speak`` reads the
answer aloud while it streams (the window's speaker, app/ui/voice/terminal.py), with the
chat's engine or ``--speak-engine NAME``; an engine the tier refuses exits 5 before the
message is sent, and a reading that fails exits 3 after the answer is printed and kept.
Ephemeral chats never open the vault and leave nothing on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from app.chat.attachments import NewAttachment
from app.chat.events import TurnDelta, TurnFinished, TurnReasoning, TurnStarted
from app.chat.stats import message_stats_line
from app.errors import ExitCode, ProviderFailedError, UsageError
from app.runtime import open_session, positive_int
from app.session import Session
from app.store.models import ChatParams, MessageStatus, Tier
from app.vault.cli import unlock_parent_parsers

if TYPE_CHECKING:
    from app.config import TTSEntry
    from app.store.transfer import ImportedChats
    from app.ui.voice.terminal import AnswerReader

TITLE_WAIT_SECONDS = 15.0

T = TypeVar("T")


def _run(
    args: argparse.Namespace,
    work: Callable[[Session], Awaitable[T]],
    *,
    with_vault: bool = True,
    qt_loop: bool = False,
) -> T:
    """Open the front door as ``args`` say, run ``work`` with the session, close it;
    ``qt_loop``: on a Qt event loop (reading aloud plays through Qt)."""

    async def main() -> T:
        async with open_session(args, with_vault=with_vault) as session:
            return await work(session)

    if qt_loop:
        from app.ui.voice.terminal import run_on_qt_loop

        return run_on_qt_loop(main)
    return asyncio.run(main())


# --- hushchat chat ----------------------------------------------------------------------------


def register_chat(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat chat [--chat ID | --new] [--tier T] [--provider NAME] MESSAGE``."""
    parser = subparsers.add_parser(
        "chat",
        parents=unlock_parent_parsers(),
        help="send a message and stream the answer",
        description="Send MESSAGE in a new chat (or --chat ID) and stream the answer to stdout.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--chat", metavar="ID", help="continue this chat (an id or its prefix)")
    which.add_argument("--new", action="store_true", help="start a new chat (the default)")
    parser.add_argument(
        "--tier",
        choices=[t.value for t in Tier],
        help="privacy tier of a new chat (default: standard)",
    )
    parser.add_argument("--provider", metavar="NAME", help="provider_name to use")
    parser.add_argument("--system", default="", help="system prompt of a new chat")
    parser.add_argument("--max-tokens", type=positive_int, metavar="N")
    parser.add_argument(
        "--attach",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="attach a file (text, Markdown, HTML, PDF, .docx, or an image for a vision "
        "model); repeat for several",
    )
    parser.add_argument(
        "--speak",
        action="store_true",
        help="read the answer aloud while it streams, with the chat's speech engine "
        "(default_tts, if its tier allows it; see `tts:` in the config file)",
    )
    parser.add_argument(
        "--speak-engine",
        metavar="NAME",
        help="read the answer aloud with this tts entry (implies --speak)",
    )
    parser.add_argument(
        "message",
        help="the message ('' with --attach sends only the files); '-' reads it from "
        "standard input",
    )
    parser.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    tier = Tier(args.tier) if args.tier else None
    if args.chat and tier is Tier.EPHEMERAL:
        raise UsageError("Ephemeral chats end with the command; start a new one without --chat")
    ephemeral = tier is Tier.EPHEMERAL

    async def turn(session: Session) -> int:
        message = sys.stdin.read() if args.message == "-" else args.message
        return await _chat_turn(args, session, tier or Tier.STANDARD, message)

    speak = bool(args.speak or args.speak_engine)
    return _run(args, turn, with_vault=not ephemeral, qt_loop=speak)


async def _chat_turn(args: argparse.Namespace, session: Session, tier: Tier, message: str) -> int:
    service = session.service
    if args.chat:
        chat = await service.chat(await service.resolve_id(args.chat))
        if args.tier and chat.tier != tier:
            raise UsageError(
                f"chat {chat.id[:12]} is {chat.tier.value}; move it with "
                f"`hushchat chats move {chat.id[:12]} {tier.value}`"
            )
        if args.provider:
            chat = await service.update(chat.id, provider=args.provider)
    else:
        chat = None
    speaking = _speaking_engine(args, session, chat.tier if chat else tier)
    if chat is None:
        chat = await service.create_chat(tier, provider=args.provider, system_prompt=args.system)
    finished: TurnFinished | None = None
    reader: AnswerReader | None = None
    files = [NewAttachment.from_path(path) for path in args.attach]
    turn = service.send(chat.id, message, attachments=files, max_tokens=args.max_tokens)
    async with contextlib.aclosing(turn):
        try:
            first = await anext(turn)
        except Exception:
            # Refused before anything was saved (a file, the policy, the vision check):
            # the chat this command just made would stay behind empty.
            if not args.chat and await service.count_messages(chat.id) == 0:
                await service.purge(chat.id)
            raise
        try:
            async for event in _prepend(first, turn):
                if isinstance(event, TurnDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    if reader is not None:
                        reader.add(event.text)
                elif isinstance(event, TurnReasoning):
                    sys.stderr.write(event.text)
                elif isinstance(event, TurnStarted):
                    # Printed once the user's message is saved: scripts (and the crash
                    # tests) can rely on it being on disk from here on.
                    via = f" via {chat.provider}" if chat.provider else ""
                    print(f"chat {chat.id} ({chat.tier.value}){via}", file=sys.stderr, flush=True)
                    if speaking is not None:
                        reader = _reader(session, chat.tier, speaking)
                    if event.dropped:
                        print(
                            f"({event.dropped} older messages not sent: they do not fit the "
                            "model's context)",
                            file=sys.stderr,
                            flush=True,
                        )
                elif isinstance(event, TurnFinished):
                    finished = event
        except BaseException:
            if reader is not None:
                reader.close()
            raise
    sys.stdout.write("\n")
    sys.stdout.flush()
    stats = message_stats_line(finished.message) if finished is not None else None
    if stats:
        print(stats, file=sys.stderr, flush=True)
    if finished is not None and finished.message.sources:
        print(f"sources: {'; '.join(finished.message.sources)}", file=sys.stderr, flush=True)
    not_read = await _read_to_the_end(reader, finished)  # the stats first, then listen
    if finished is not None and finished.message.status == MessageStatus.ERROR:
        if chat.tier is Tier.EPHEMERAL:  # in memory only: gone when the command ends
            kept = "Ephemeral chat: nothing is kept"
        else:
            kept = f"the partial answer is kept in chat {chat.id[:12]}"
        raise ProviderFailedError(f"{finished.error} ({kept})")
    await service.wait_for_titles(TITLE_WAIT_SECONDS)
    if not_read:
        raise ProviderFailedError(f"not read aloud: {not_read} (the answer is kept)")
    return ExitCode.OK


def _speaking_engine(args: argparse.Namespace, session: Session, tier: Tier) -> TTSEntry | None:
    """The engine ``--speak`` reads with, checked against the chat's tier before anything
    is sent (PolicyRefusedError, exit 5); None without ``--speak``."""
    if not (args.speak or args.speak_engine):
        return None
    from app.ui.voice.terminal import chosen_engine

    return chosen_engine(session, tier, args.speak_engine)


def _reader(session: Session, tier: Tier, entry: TTSEntry) -> AnswerReader:
    from app.ui.voice.terminal import AnswerReader

    return AnswerReader(session, tier, entry)


async def _read_to_the_end(
    reader: AnswerReader | None, finished: TurnFinished | None
) -> str | None:
    """Let ``reader`` finish the answer (or stop it, when the answer did not complete);
    the reading's failure, or None."""
    if reader is None:
        return None
    if finished is None or finished.message.status != MessageStatus.COMPLETE:
        reader.close()
        return None
    reader.end()
    return await reader.finished()


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


# --- hushchat chats ---------------------------------------------------------------------------


def register_chats(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat chats list|show|rename|delete|move|search|export|import``."""
    unlock = unlock_parent_parsers()
    chats = subparsers.add_parser("chats", help="list, show, search, export and manage chats")
    commands = chats.add_subparsers(title="chats commands", metavar="COMMAND", required=True)

    commands.add_parser("list", parents=unlock, help="chats, most recent first").set_defaults(
        handler=_list
    )
    show = commands.add_parser("show", parents=unlock, help="print a chat")
    show.add_argument("id", help="chat id or prefix")
    show.set_defaults(handler=_show)
    rename = commands.add_parser("rename", parents=unlock, help="give a chat your own title")
    rename.add_argument("id", help="chat id or prefix")
    rename.add_argument("title")
    rename.set_defaults(handler=_rename)
    delete = commands.add_parser("delete", parents=unlock, help="delete a chat for good")
    delete.add_argument("id", help="chat id or prefix")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_delete)
    move = commands.add_parser("move", parents=unlock, help="move a chat to another tier")
    move.add_argument("id", help="chat id or prefix")
    move.add_argument("tier", choices=[Tier.STANDARD.value, Tier.PRIVATE.value])
    move.set_defaults(handler=_move)
    search = commands.add_parser("search", parents=unlock, help="full-text search")
    search.add_argument("query")
    search.add_argument("--limit", type=positive_int, default=20)
    search.set_defaults(handler=_search)
    export = commands.add_parser("export", parents=unlock, help="export chats to Markdown or JSON")
    export.add_argument("id", nargs="?", help="one chat (default: all)")
    export.add_argument("--format", choices=["md", "json"], required=True)
    export.add_argument("--out", required=True, metavar="FILE", help="output file ('-': stdout)")
    export.set_defaults(handler=_export)
    imp = commands.add_parser("import", parents=unlock, help="import chats from a file")
    imp.add_argument(
        "file",
        type=Path,
        help="a Hushchat JSON export, ChatGPT's export .zip (or its conversations.json), "
        "or an Open WebUI chat export",
    )
    imp.add_argument("--format", choices=["hushchat", "chatgpt", "openwebui"], default=None)
    imp.add_argument(
        "--tier", choices=[Tier.STANDARD.value, Tier.PRIVATE.value], default=Tier.STANDARD.value
    )
    imp.set_defaults(handler=_import)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def _list(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        for chat in await session.service.list_chats():
            pin = "*" if chat.pinned else " "
            print(
                f"{chat.id[:12]}{pin} {chat.tier.value:<9} {_when(chat.updated_at)}  {chat.title}"
            )

    _run(args, work)
    return ExitCode.OK


def _show(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        service = session.service
        chat = await service.chat(await service.resolve_id(args.id))
        print(f"# {chat.title}\n")
        print(f"{chat.tier.value} · {chat.provider or 'default provider'} · {chat.id}")
        if chat.system_prompt:
            print(f"\nSystem prompt: {chat.system_prompt}")
        if chat.memory:
            print(f"Memory: {chat.memory}")
        if not chat.params.is_default:
            print(f"Parameters: {describe_params(chat.params)}")
        attached = await service.attachments(chat.id)
        for message in await service.full_thread(chat.id):
            versions = f" [{message.version}/{message.versions}]" if message.versions > 1 else ""
            status = "" if message.status == MessageStatus.COMPLETE else f" ({message.status})"
            who = "You" if message.role == "user" else f"Assistant ({message.model or '?'})"
            print(f"\n## {who}{versions}{status}\n\n{message.content}")
            for attachment in attached.get(message.id, []):
                print(f"\n[attached: {attachment.name}, {describe_size(attachment.size)}]")
            if message.sources:
                print(f"\n_sources: {'; '.join(message.sources)}_")
            stats = message_stats_line(message)
            if stats:
                print(f"\n_{stats}_")

    _run(args, work)
    return ExitCode.OK


def _rename(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        await session.service.rename(await session.service.resolve_id(args.id), args.title)

    _run(args, work)
    return ExitCode.OK


def _delete(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        service = session.service
        chat = await service.chat(await service.resolve_id(args.id))
        count = await service.count_messages(chat.id)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("deleting a chat cannot be undone here; add --yes to confirm")
            answer = await asyncio.to_thread(
                input, f"Delete '{chat.title}' and its {count} messages for good? [y/N] "
            )
            if answer.strip().lower() not in {"y", "yes"}:
                print("nothing deleted", file=sys.stderr)
                return
        await service.purge(chat.id)
        print(f"deleted '{chat.title}' ({count} messages)", file=sys.stderr)

    _run(args, work)
    return ExitCode.OK


def _move(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        service = session.service
        await service.move(await service.resolve_id(args.id), Tier(args.tier))

    _run(args, work)
    print(f"moved to {args.tier}", file=sys.stderr)
    return ExitCode.OK


def _search(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        for hit in await session.service.search(args.query, limit=args.limit):
            where = "title" if hit.message_id is None else "message"
            snippet = " ".join(hit.snippet.split())
            print(f"{hit.chat_id[:12]}  {hit.chat_title}  ({where}) {snippet}")

    _run(args, work)
    return ExitCode.OK


def _export(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        service = session.service
        ids = [await service.resolve_id(args.id)] if args.id else None
        if args.out == "-":
            sys.stdout.write(await service.export(ids, args.format))
        else:
            await service.export_to_file(ids, args.format, Path(args.out))
            print(f"exported to {args.out}", file=sys.stderr)

    _run(args, work)
    return ExitCode.OK


def _import(args: argparse.Namespace) -> int:
    async def work(session: Session) -> ImportedChats:
        return await session.service.import_file(args.file, fmt=args.format, tier=Tier(args.tier))

    imported = _run(args, work)
    print(imported.summary(), file=sys.stderr)
    return ExitCode.OK


def describe_size(size: int) -> str:
    """``12,345 bytes``, ``12 KB``, ``3.4 MB``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):,.1f} MB"
    if size >= 10 * 1024:
        return f"{size // 1024:,} KB"
    return f"{size:,} bytes"


def describe_params(params: ChatParams) -> str:
    """A chat's own parameters on one line ("temperature 0.3, max tokens 64"); the ones
    left at the provider's default are not named."""
    parts = []
    if params.temperature is not None:
        parts.append(f"temperature {params.temperature:g}")
    if params.top_p is not None:
        parts.append(f"top-p {params.top_p:g}")
    if params.max_tokens is not None:
        parts.append(f"max tokens {params.max_tokens:,}")
    if params.context_size is not None:
        parts.append(f"context length {params.context_size:,}")
    if params.stop is not None:
        stops = ", ".join(repr(s) for s in params.stop) or "none"
        parts.append(f"stop sequences {stops}")
    if params.read_aloud:
        parts.append("answers read aloud in the window")
    return "; ".join(parts)
