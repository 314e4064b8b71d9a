"""The failure alert every task gets through DEFAULT_ARGS: one mail when a task has failed for good.

on_retry_callback is not set: a try that will be retried is not a failure yet.
"""

from __future__ import annotations

import logging
import traceback

log = logging.getLogger(__name__)

# Only its own Variables: a task that failed because another Variable is bad (a train_config that is
# not JSON) is mailed all the same.
_ALERT_KEYS = frozenset({"alert_emails"})
REASON_CHARS = 120
MAX_TRACEBACK_CHARS = 20_000


def notify_failure(context) -> None:
    """on_failure_callback: mail `alert_emails` that a task failed (see `tasks.alerts.send_alert`).

    Never raises: any problem with the mail is one warning line, and the task's own failure stays
    what Airflow records and shows.
    """
    try:
        from tasks.alerts import send_alert

        subject, body = failure_message(context)
        send_alert(subject, body, settings=_alert_settings())
    except Exception as exc:  # noqa: BLE001 - the task's failure is what matters
        log.warning("failure alert not sent: %s: %s", type(exc).__name__, exc)


def failure_message(context) -> tuple[str, str]:
    """(subject, plain-text body) of the failure mail, from an Airflow task context.

    The subject names the DAG, the task, the run and the reason (the first line of the exception's
    message, cut to REASON_CHARS); the run comes before the reason so no cut ever loses it.
    """
    from tasks.alerts import one_line

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id", "?")
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    task = task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"
    error = context.get("exception")
    reason = one_line(_reason(error), REASON_CHARS)
    subject = f"{dag_id} failed (run {run_id}, task {task}): {reason}"
    lines = [
        f"DAG:    {dag_id}",
        f"Run:    {run_id}",
        f"Task:   {task}",
        f"Try:    {getattr(ti, 'try_number', '?')}",
        f"Log:    {_log_url(ti)}",
        f"Reason: {reason}",
        "",
        *_exception_lines(error),
    ]
    return subject, "\n".join(lines)


def _reason(error: object) -> str:
    if error is None:
        return "no exception recorded (the task was stopped or its process lost)"
    if isinstance(error, BaseException):
        return str(error).strip() or type(error).__name__
    return str(error)


def _exception_lines(error: object) -> list[str]:
    """The exception's type and whole message first, then its traceback (the end, if very long)."""
    if not isinstance(error, BaseException):
        return ["Exception:", str(error) if error else "(none)"]
    trace = "".join(traceback.format_exception(error)).rstrip()
    if len(trace) > MAX_TRACEBACK_CHARS:
        trace = "...\n" + trace[-MAX_TRACEBACK_CHARS:]
    return [f"Exception ({type(error).__name__}):", str(error), "", "Traceback:", trace]


def _log_url(ti) -> str:
    try:
        return str(ti.log_url)
    except Exception:  # noqa: BLE001 - a context without a task instance, or no [api] base_url
        return "(not available)"


def _alert_settings():
    from airflow.sdk import Variable

    from tasks.config import Settings

    return Settings.load(lambda key, default: Variable.get(key, default=default) if key in _ALERT_KEYS else None)
