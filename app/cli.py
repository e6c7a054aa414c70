"""The ``hushchat`` command: the desktop app by default, plus scriptable subcommands.

Every subcommand returns one of the exit codes of ``app.errors.ExitCode``
(0 ok, 1 unexpected, 2 usage or config, 3 provider, 4 vault, 5 privacy policy).
Errors are one clear line per problem on stderr; ``--debug`` adds tracebacks
and debug logging. Domains add their subcommands with ``register(subparsers)``.

Start-up time: the command line is parsed twice. The first pass knows each command
only by its name and help line (``COMMANDS``), so ``hushchat`` (the window),
``--help`` and ``--version`` import no command's module; the second pass imports
the module of the one command given and parses with its real arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from app import __version__
from app.errors import ExitCode, HushchatError, ProviderFailedError
from app.logs import configure_logging, redact, register_secret
from app.runtime import load, positive_int

if TYPE_CHECKING:  # the provider layer's models (pydantic) load with the commands that use them
    from providers import ChatRequest, ProviderSpec

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]
Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _register_chat(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.chat.cli import register_chat

    register_chat(subparsers)


def _register_chats(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.chat.cli import register_chats

    register_chats(subparsers)


def _register_vault(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.vault.cli import register

    register(subparsers)


def _register_agent(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], command: str
) -> None:
    from app.agent.cli import register_lock, register_unlock

    (register_unlock if command == "unlock" else register_lock)(subparsers)


def _register_speak(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.speech.cli import register

    register(subparsers)


#: The top-level commands in help order: name → (help line, what adds it to the parser).
#: Each registrar adds exactly its own command; a test checks that the help lines here are
#: the ones the registrars give.
def _register_sync(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.sync.cli import register

    register(subparsers)


COMMANDS: dict[str, tuple[str, Registrar]] = {
    "chat": ("send a message and stream the answer", _register_chat),
    "chats": ("list, show, search, export and manage chats", _register_chats),
    "providers": ("list, inspect and try LLM providers", lambda s: register_providers(s)),
    "config": ("show, check or explain the config file", lambda s: register_config(s)),
    "vault": ("create and manage the encrypted vault", _register_vault),
    "unlock": (
        "unlock once; later commands need no secret until idle, suspend or lock",
        lambda s: _register_agent(s, "unlock"),
    ),
    "lock": ("lock now: the unlock agent forgets the keys", lambda s: _register_agent(s, "lock")),
    "sync": ("sync chats with your own Hushchat sync server", lambda s: _register_sync(s)),
    "speak": ("read a message aloud into an audio file", lambda s: _register_speak(s)),
}


class _HelpFormatter(argparse.HelpFormatter):
    """Fills in the platform's config path only when help is printed (it needs the schema)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is not None and "{config_path}" in text:
            from app.config import default_config_path

            text = text.replace("{config_path}", str(default_config_path()))
        return text


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the real subcommands of ``commands`` (default: all).

    Every other command is a stand-in with its name and help line that accepts any
    arguments, which is enough to print the top-level help and to find the command.
    """
    real = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="hushchat",
        description="Hushchat: private, local-first chat with the LLMs you choose.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hushchat {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation: offscreen window, throw-away vault, a rendered "
        "answer, lock (touches nothing of yours); exit 0 when it works",
    )
    parser.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add Hushchat to the desktop's application launcher (Linux)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="config file (default: $HUSHCHAT_CONFIG, then the "
        "platform config file {config_path})"
    )  # fmt: skip
    parser.add_argument(
        "--profile", metavar="DIR", help="profile directory (default: $HUSHCHAT_PROFILE, "
        "then the platform data directory)"
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    parser.add_argument(
        "--log-format", choices=["human", "json"], help="log line format (default: from config)"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (help_line, register) in COMMANDS.items():
        if name in real:
            register(subparsers)
        else:
            stand_in = subparsers.add_parser(name, help=help_line, add_help=False)
            stand_in.set_defaults(stand_in=name)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line, importing only the module of the command it names."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(())
    found, _rest = parser.parse_known_args(arguments)
    command: str | None = getattr(found, "stand_in", None)
    if command is not None:
        parser = build_parser((command,))
    return parser.parse_args(arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hushchat`` console script; returns the exit code."""
    args = parse_args(argv)
    configure_logging("DEBUG" if args.debug else "WARNING", args.log_format or "human")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None and args.self_test:
        from app.self_test import run_self_test

        return run_self_test()
    if handler is None and args.install_desktop_entry:
        from app.desktop_entry import run_install

        return run_install()
    if handler is None:  # no subcommand: open the window
        problem = display_problem(os.environ, sys.platform)
        if problem is not None:
            _print_error(problem)
            return ExitCode.USAGE
        from app.ui.app import run_gui

        handler = run_gui
    try:
        return handler(args)
    except HushchatError as error:
        _print_error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except Exception as error:  # the last line of defence: one line, not a traceback
        from providers import ProviderError  # loaded already if this is one of its errors

        if isinstance(error, ProviderError):
            _print_error(str(error))
            return ExitCode.PROVIDER
        if args.debug:
            raise
        log.debug("unexpected error", exc_info=True)
        _print_error(
            f"unexpected error: {type(error).__name__}: {error}; "
            "run again with --debug for the details"
        )
        return ExitCode.UNEXPECTED


def display_problem(env: Mapping[str, str], platform: str) -> str | None:
    """Why the window cannot open here, or None.

    Qt aborts the process when it finds no display, so say so first, in one line.
    """
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no graphical display found (DISPLAY and WAYLAND_DISPLAY are unset): start Hushchat "
        "from a desktop session, or use the command line (hushchat --help)"
    )


def _print_error(message: str) -> None:
    for line in redact(message).splitlines() or [""]:
        print(f"hushchat: {line}", file=sys.stderr)


# --- hushchat config ------------------------------------------------------------------------


def register_config(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat config path|check|example``."""
    config = subparsers.add_parser("config", help="show, check or explain the config file")
    commands = config.add_subparsers(title="config commands", metavar="COMMAND", required=True)
    commands.add_parser("path", help="print which config file is used").set_defaults(
        handler=_config_path
    )
    commands.add_parser("check", help="validate the config file").set_defaults(
        handler=_config_check
    )
    commands.add_parser(
        "example", help="print an example config documenting every setting"
    ).set_defaults(handler=_config_example)


def _config_path(args: argparse.Namespace) -> int:
    from app.config import default_config_path

    loaded = load(args)
    print(loaded.path if loaded.path else f"{default_config_path()} (not present: defaults)")
    return ExitCode.OK


def _config_check(args: argparse.Namespace) -> int:
    loaded = load(args)
    where = loaded.path or "defaults"
    print(f"{where}: ok, {len(loaded.config.llms)} provider(s) configured")
    return ExitCode.OK


def _config_example(_args: argparse.Namespace) -> int:
    from app.config import render_example

    sys.stdout.write(render_example())
    return ExitCode.OK


# --- hushchat providers ---------------------------------------------------------------------


def register_providers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hushchat providers list|models|probe``."""
    providers = subparsers.add_parser("providers", help="list, inspect and try LLM providers")
    commands = providers.add_subparsers(
        title="providers commands", metavar="COMMAND", required=True
    )
    commands.add_parser("list", help="configured providers").set_defaults(handler=_providers_list)
    models = commands.add_parser("models", help="models the provider's server reports")
    models.add_argument("name", help="provider_name of a configured entry")
    models.set_defaults(handler=_providers_models)
    probe = commands.add_parser(
        "probe", help="stream an answer to a prompt, then print time to first token and tokens/s"
    )
    probe.add_argument("name", help="provider_name of a configured entry")
    probe.add_argument("--prompt", required=True, help="the prompt to send ('-' reads stdin)")
    probe.add_argument("--system", default="", help="an optional system prompt")
    probe.add_argument("--max-tokens", type=positive_int, default=None, metavar="N")
    probe.set_defaults(handler=_providers_probe)


def _providers_list(args: argparse.Namespace) -> int:
    config = load(args).config
    if not config.llms:
        print("no providers configured (see `hushchat config example`)", file=sys.stderr)
        return ExitCode.OK
    default = config.llm().provider_name
    rows = [("NAME", "TYPE", "MODEL", "LOCALITY", "BASE URL")]
    for entry in config.llms:
        mark = "*" if entry.provider_name == default else " "
        rows.append(
            (
                f"{mark}{entry.provider_name}",
                entry.type + (" (template)" if entry.template else ""),
                entry.model_name,
                entry.effective_locality.value,
                entry.base_url,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return ExitCode.OK


def _providers_models(args: argparse.Namespace) -> int:
    loaded = load(args)
    from app.api_keys import provider_spec

    spec = provider_spec(loaded, args.name)
    if spec.api_key is not None:
        register_secret(spec.api_key.get_secret_value())

    async def fetch() -> None:
        from providers import create_provider  # the HTTP stack, only when needed

        async with create_provider(spec) as provider:
            models = await provider.list_models()
        for model in models:
            extra = f"  (context {model.context_size})" if model.context_size else ""
            print(f"{model.id}{extra}")

    asyncio.run(fetch())
    return ExitCode.OK


def _providers_probe(args: argparse.Namespace) -> int:
    from providers import ChatMessage, ChatRequest, ProviderError, Role  # start-up: not at top

    loaded = load(args)
    from app.api_keys import provider_spec

    spec = provider_spec(loaded, args.name)
    if spec.api_key is not None:
        register_secret(spec.api_key.get_secret_value())
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = []
    if args.system:
        messages.append(ChatMessage(role=Role.SYSTEM, content=args.system))
    messages.append(ChatMessage(role=Role.USER, content=prompt))
    request = ChatRequest(messages=messages, max_tokens=args.max_tokens)
    stats = ProbeStats()
    try:
        asyncio.run(_stream_probe(spec, request, stats, sys.stdout))
    except ProviderError as error:
        if stats.deltas:
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise ProviderFailedError(str(error)) from error
    sys.stdout.write("\n")
    sys.stdout.flush()
    print(stats.summary(), file=sys.stderr)
    return ExitCode.OK


class ProbeStats:
    """Timing of one probe: time to first token and generation rate."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.deltas = 0
        self.completion_tokens: int | None = None
        self.finish: str | None = None

    def delta(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.deltas += 1

    def summary(self) -> str:
        """Time to first token, tokens and a rate that names its interval (app.chat.stats)."""
        from app.chat.stats import answer_stats, stats_line

        if self.first is None or self.last is None:
            return f"no text received (finish: {self.finish or 'unknown'})"
        stats = answer_stats(
            started=self.started,
            first_token=self.first,
            finished=self.last,
            tokens=self.completion_tokens or self.deltas,
            chunks=self.deltas,
        )
        return f"{stats_line(stats)}; finish: {self.finish or 'unknown'}"


async def _stream_probe(
    spec: ProviderSpec, request: ChatRequest, stats: ProbeStats, out: TextIO
) -> None:
    # The HTTP stack, only when needed.
    from providers import FinishEvent, ReasoningDelta, TextDelta, UsageEvent, create_provider

    async with create_provider(spec) as provider:
        async for event in provider.stream_chat(request):
            if isinstance(event, TextDelta):
                stats.delta()
                out.write(event.text)
                out.flush()
            elif isinstance(event, ReasoningDelta):
                sys.stderr.write(event.text)
                sys.stderr.flush()
            elif isinstance(event, UsageEvent):
                stats.completion_tokens = event.usage.completion_tokens
            elif isinstance(event, FinishEvent):
                stats.finish = event.reason


if __name__ == "__main__":
    sys.exit(main())
