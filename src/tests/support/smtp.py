"""A real SMTP server (aiosmtpd) on a free 127.0.0.1 port that keeps every message it accepts."""

from __future__ import annotations

import email
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope and the parsed mail."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The body as plain text (the hook sends it as an HTML part)."""
        part = self.message.get_body(preferencelist=("html", "plain"))
        return html.unescape(re.sub(r"<[^>]+>", "", part.get_content()))


@dataclass
class MailSink:
    """aiosmtpd handler: accepts every message and keeps it, in order."""

    port: int
    messages: list[Received] = field(default_factory=list)

    @property
    def connection_uri(self) -> str:
        """The Airflow connection URI for this server: plain SMTP, no SSL, no STARTTLS, no login."""
        return f"smtp://127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[MailSink]:
    """Run an SMTP server on 127.0.0.1 for the block; yields its sink of received messages.

    A message is in `messages` before the client's DATA command is answered, so once a send has
    returned its message is there: no waiting or polling needed.
    """
    from aiosmtpd.controller import Controller

    sink = MailSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
