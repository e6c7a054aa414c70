"""Outgoing mail (verification codes, password resets, recovery notifications) over SMTP.

Mails are sent from background tasks so that answers do not reveal, by their timing,
whether an address is known. Addresses and codes are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage

import aiosmtplib

from sync_server.settings import Settings

log = logging.getLogger(__name__)


class Mailer:
    """Sends plain-text mails with aiosmtplib; keeps track of in-flight sends."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """True when SMTP is configured."""
        return self._settings.smtp_enabled

    def send_later(self, to: str, subject: str, body: str, *, purpose: str) -> None:
        """Queue a mail; failures are logged (without the address), never raised."""
        if not self.enabled:
            log.warning("mail_not_configured", extra={"purpose": purpose})
            return
        task = asyncio.create_task(self._send(to, subject, body, purpose))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, to: str, subject: str, body: str, purpose: str) -> None:
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=(
                    settings.smtp_password.get_secret_value() if settings.smtp_password else None
                ),
                use_tls=settings.smtp_security == "tls",
                start_tls=settings.smtp_security == "starttls",
                timeout=settings.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("mail_failed", extra={"purpose": purpose, "error": type(exc).__name__})
        else:
            log.info("mail_sent", extra={"purpose": purpose})

    async def drain(self, limit_seconds: float = 10.0) -> None:
        """Wait (bounded) for queued mails, e.g. at shutdown or in tests."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=limit_seconds)
