"""Logging a parser's failure on a bad file without logging the file.

Exceptions from document parsers often quote the bytes they choked on, so the log
gets the exception's type and the stack it was raised through, never its message.
"""

from __future__ import annotations

import logging
import traceback

logger = logging.getLogger(__name__)


def log_parser_failure(what: str, exc: BaseException, *, expected: bool) -> None:
    """Log that reading a ``what`` file failed.

    ``expected`` failures (the parser's own "this file is malformed" errors) get one
    line; others may be bugs, in the parser or here, and get their traceback.
    """
    if expected:
        logger.info("A %s attachment is unreadable: %s", what, type(exc).__name__)
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.warning(
        "Reading a %s attachment failed with %s (message withheld: it may quote the "
        "file); traceback:\n%s",
        what,
        type(exc).__name__,
        frames,
    )
