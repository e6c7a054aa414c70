"""``hushchat speak ID [--engine NAME] --out FILE``: a message read aloud into a file.

The message's Markdown is prepared for speech (code blocks announced, links read as
their text), sent to the engine (``--engine``, else ``default_tts`` or the first
engine the chat's tier allows) in requests of at most 4,096 characters cut at sentence
ends (``app.speech.audio``), and the audio, joined into one file, written atomically to
FILE (a temporary file beside it, then renamed; mode 0600), or to standard output
with ``--out -``. Exit codes as for ``hushchat chat``: 5 when the chat's privacy tier
refuses the engine (nothing is sent), 3 when the engine fails, 2 for an unknown
message or engine, 4 for a locked vault or wrong secret.

Private chats: the issue asks for no temporary audio files of Private (or Ephemeral)
answers, and there are none: the audio is kept in memory until it is written to the
file the user named. That file is the user's explicit choice, not a temporary one,
so it is written, but unencrypted, and a warning on stderr says so. (Ephemeral chats
end with the ``hushchat chat`` command that made them, so none can be named here.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.errors import ExitCode, UsageError
from app.runtime import open_session
from app.session import Session
from app.speech.audio import join_audio, require_joinable, text_parts
from app.speech.engines import Audio, open_engine
from app.speech.policy import default_engine, find_engine, require_engine
from app.speech.text import prepare_for_speech
from app.tiers import Tier
from app.vault.cli import unlock_parent_parsers

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat speak ID [--engine NAME] --out FILE``."""
    parser = subparsers.add_parser(
        "speak",
        parents=unlock_parent_parsers(),
        help="read a message aloud into an audio file",
        description="Read a message aloud with a speech engine from the 'tts:' list of the "
        "config file and write the audio to FILE. ID is a chat's id (its last answer is "
        "read; `hushchat chats list` shows them) or a message's id (in `hushchat chats "
        "export ID --format json --out -`); the first few characters are enough when "
        "no other id starts with them.",
    )
    parser.add_argument(
        "message_id",
        metavar="ID",
        help="a chat id (its last answer) or a message id, or a unique prefix of either",
    )
    parser.add_argument(
        "--engine",
        metavar="NAME",
        help="name of the tts entry to use (default: default_tts, else the first one the "
        "chat's privacy tier allows)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="audio file to write, in the engine's format (mp3 unless its entry says "
        "otherwise); '-' writes to standard output",
    )
    parser.set_defaults(handler=_speak)


def _speak(args: argparse.Namespace) -> int:
    async def main() -> int:
        async with open_session(args) as session:
            return await speak(session, args.message_id, args.engine, args.out)

    return asyncio.run(main())


async def speak(session: Session, message_id: str, engine_name: str | None, out: str) -> int:
    """Read the message ``message_id`` names aloud into ``out`` (a path, or '-' for
    stdout): a message id, a chat id for its last answer, or a unique prefix of either."""
    chat, message = await session.service.readable(message_id)
    config = session.config.config
    if engine_name:
        entry = find_engine(config, engine_name)
        require_engine(chat.tier, entry)
    else:
        entry = default_engine(config, chat.tier)
    if entry.type == "system":
        raise UsageError(
            f"{entry.name}: system voices play in the window only; name an openai or xtts "
            "engine with --engine to write audio to a file"
        )
    text = prepare_for_speech(message.content)
    if not text:
        raise UsageError(f"message {message.id[:12]} has nothing to read aloud")
    texts = text_parts(text)  # a long answer: several requests
    require_joinable(entry.audio_format, len(texts))
    key = await session.api_keys.resolve(entry)
    parts: list[bytes] = []
    media_type = ""
    async with open_engine(entry, tier=chat.tier, api_key=key) as engine:
        for part in texts:
            chunks: list[bytes] = []

            async def keep(chunk: bytes, chunks: list[bytes] = chunks) -> None:
                chunks.append(chunk)

            media_type = (await engine.synthesize(part, keep)).media_type
            parts.append(b"".join(chunks))
    data = join_audio(entry.audio_format, parts)
    audio = Audio(media_type, len(data))
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        await asyncio.to_thread(_write, Path(out), data)
        _report(chat.tier, audio, entry.name, out)
    return ExitCode.OK


def _write(path: Path, data: bytes) -> None:
    from app.vault.atomic_file import write_atomically

    try:
        write_atomically(path, data)
    except OSError as error:
        raise UsageError(
            f"cannot write {path}: {error.strerror or error}; choose another --out FILE"
        ) from error


def _report(tier: Tier, audio: Audio, engine: str, out: str) -> None:
    print(f"wrote {audio.size:,} bytes of {audio.media_type} to {out} ({engine})", file=sys.stderr)
    if tier is not Tier.STANDARD:
        print(
            f"warning: {out} holds a {tier.value.capitalize()} chat's message as audio, not "
            "encrypted; delete it when you no longer need it",
            file=sys.stderr,
        )
