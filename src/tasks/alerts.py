"""Alert mails (task failures, gate decisions, drift warnings) through Airflow's SMTP connection.

`send_alert` is the one way to send one, for the tasks and the DAG layer alike. Nobody to mail (the
`alert_emails` setting empty) means no mail and no error, and Airflow is not even imported. Otherwise
the SMTP provider's hook sends it through the connection `smtp_default` (AIRFLOW_CONN_SMTP_DEFAULT, a
secrets backend or the metadata database). A mail that cannot be sent is one warning line in the log
and `False`, never an exception: an alert must not fail, or hide the failure of, what it reports on.
"""

from __future__ import annotations

import html
import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.config import Settings

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
SUBJECT_PREFIX = "[sluice]"
# The sender when the connection has no `from_email` extra and its login is not an address.
DEFAULT_FROM = "sluice@localhost"
MAX_SUBJECT_CHARS = 200
CONNECTION_EXAMPLE = "AIRFLOW_CONN_SMTP_DEFAULT='smtp://user:password@host:587?disable_ssl=true'"
_SEPARATORS = re.compile(r"[\s,;]+")


class _NoConnection(Exception):
    """The connection smtp_default is not defined anywhere Airflow looks."""


def alert_recipients(alert_emails: str) -> list[str]:
    """The addresses in an `alert_emails` value (separated by commas, semicolons or white space)."""
    return [address for address in _SEPARATORS.split(alert_emails or "") if address]


def one_line(text: object, limit: int = 120) -> str:
    """The first non-blank line of `text`, white space collapsed, cut to `limit` characters ("..." marks a cut)."""
    first = next((line for line in str(text).splitlines() if line.strip()), "")
    first = " ".join(first.split())
    return first if len(first) <= limit else first[: limit - 3].rstrip() + "..."


def send_alert(subject: str, body: str, *, settings: Settings) -> bool:
    """Mail `subject` (one line, prefixed "[sluice]") and `body` (plain text) to `settings.alert_emails`.

    True when the SMTP server accepted the mail. False when there is nobody to mail (no error, no
    log line) or it could not be sent: no connection smtp_default, server down, refused (one warning).
    """
    recipients = alert_recipients(settings.alert_emails)
    if not recipients:
        return False
    subject = one_line(f"{SUBJECT_PREFIX} {subject}", MAX_SUBJECT_CHARS)
    try:
        _send(recipients, subject, body)
    except _NoConnection:
        log.warning(
            "alert mail not sent (%s): there is no Airflow connection %r; define it, e.g. %s",
            subject, SMTP_CONN_ID, CONNECTION_EXAMPLE,
        )
        return False
    except Exception as exc:  # noqa: BLE001 - whatever went wrong with the mail, the caller carries on
        log.warning("alert mail not sent (%s): %s: %s", subject, type(exc).__name__, one_line(exc, 300))
        return False
    log.info("alert mail sent to %s: %s", ", ".join(recipients), subject)
    return True


def _send(recipients: list[str], subject: str, body: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    try:
        connection = SmtpHook.get_connection(SMTP_CONN_ID)
    except AirflowNotFoundException as exc:
        raise _NoConnection from exc
    login = connection.login or ""
    sender = connection.extra_dejson.get("from_email") or (login if "@" in login else DEFAULT_FROM)
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(to=recipients, subject=subject, html_content=as_html(body), from_email=sender)


def as_html(body: str) -> str:
    """The plain-text body as the HTML part the SMTP hook sends (escaped, line breaks kept)."""
    return f'<pre style="white-space: pre-wrap">{html.escape(body)}</pre>'
