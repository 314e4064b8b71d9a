"""Alert mails through a real SMTP server (aiosmtpd on 127.0.0.1): send_alert, and the failure mail
every task sends through DEFAULT_ARGS, from a prepare_dataset run that fails on a corrupt raw file."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT, free_port
from tests.support.smtp import smtp_server

CORRUPT = "wachttijden/corrupt.csv"
ALERT_LOGGERS = ("tasks.alerts", "pipelines._alerts")


@pytest.fixture
def smtp(monkeypatch):
    """A running SMTP server that the connection smtp_default points at, for this test only."""
    with smtp_server() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.connection_uri)
        yield sink


def alert_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in ALERT_LOGGERS and r.levelno >= logging.WARNING]


# send_alert


def test_send_alert_mails_subject_and_body_to_every_recipient(smtp):
    from tasks.alerts import send_alert
    from tasks.config import Settings

    body = "challenger v4 promoted: MAE 3.1 < 3.4 (champion v3)\n<not html> & more, Fryslân"
    sent = send_alert("train_model gate: v4 promoted (’s-Hertogenbosch)", body,
                      settings=Settings(alert_emails="ops@example.org; ml@example.org"))
    assert sent is True
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["ops@example.org", "ml@example.org"]
    assert mail.mail_from == "sluice@localhost"
    assert mail.subject == "[sluice] train_model gate: v4 promoted (’s-Hertogenbosch)"
    assert mail.text == body


def test_send_alert_uses_the_connections_from_email_and_keeps_the_subject_on_one_line(smtp, monkeypatch):
    from tasks.alerts import MAX_SUBJECT_CHARS, send_alert
    from tasks.config import Settings

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection_uri + "&from_email=alerts%40example.org")
    subject = "drift warning: " + "x" * 300 + "\nsecond line"
    assert send_alert(subject, "body", settings=Settings(alert_emails="ops@example.org"))
    [mail] = smtp.messages
    assert mail.mail_from == "alerts@example.org"
    assert "second line" not in mail.subject and "\n" not in mail.subject
    assert len(mail.subject) == MAX_SUBJECT_CHARS and mail.subject.endswith("...")


def test_send_alert_without_recipients_sends_nothing_and_says_nothing(smtp, caplog):
    from tasks.alerts import send_alert
    from tasks.config import Settings

    caplog.set_level(logging.INFO)
    assert send_alert("drift warning", "body", settings=Settings(alert_emails=" ")) is False
    assert smtp.messages == []
    assert [r for r in caplog.records if r.name in ALERT_LOGGERS] == []


def test_tasks_alerts_imports_no_airflow_and_needs_none_without_recipients():
    code = (
        "import sys\n"
        "from tasks.alerts import send_alert\n"
        "from tasks.config import Settings\n"
        "assert send_alert('s', 'b', settings=Settings()) is False\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'airflow'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_send_alert_without_the_connection_logs_one_line_and_returns_false(airflow_db, monkeypatch, caplog):
    from tasks.alerts import send_alert
    from tasks.config import Settings

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    assert send_alert("drift warning", "body", settings=Settings(alert_emails="ops@example.org")) is False
    [line] = alert_warnings(caplog)
    assert "no Airflow connection 'smtp_default'" in line and "AIRFLOW_CONN_SMTP_DEFAULT=" in line
    assert "[sluice] drift warning" in line


def test_send_alert_to_a_server_that_is_down_logs_one_line_and_returns_false(monkeypatch, caplog):
    from tasks.alerts import send_alert
    from tasks.config import Settings

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", f"smtp://127.0.0.1:{free_port()}?disable_ssl=true&disable_tls=true")
    assert send_alert("gate decision", "body", settings=Settings(alert_emails="ops@example.org")) is False
    [line] = alert_warnings(caplog)
    assert "alert mail not sent ([sluice] gate decision)" in line and "ConnectionRefusedError" in line


# The failure mail of a real DAG run


@pytest.fixture(scope="module")
def corrupt_lake(airflow_db, small_raw_csv, tmp_path_factory):
    """A data lake whose only raw file has the wrong separator: prepare_dataset's validate fails on it."""
    from tasks.data.datalake import open_datalake

    lake_dir = tmp_path_factory.mktemp("alert-lake")
    open_datalake(str(lake_dir)).write_bytes("raw", CORRUPT, small_raw_csv.read_bytes().replace(b";", b","))
    return lake_dir


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    assert not bag.import_errors
    return bag.dags[dag_id]


def run_failing_prepare(lake_dir, monkeypatch, alert_emails: str):
    monkeypatch.setenv("AIRFLOW_VAR_DATALAKE_URL", str(lake_dir))
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_EMAILS", alert_emails)
    run = load_dag("prepare_dataset").test(run_conf={"raw_file": CORRUPT})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["validate"] == "failed" and states["split"] != "success"
    return run


def test_a_failed_task_mails_the_dag_run_task_and_reason(corrupt_lake, smtp, monkeypatch):
    run = run_failing_prepare(corrupt_lake, monkeypatch, "ops@example.org")
    [mail] = smtp.messages  # validate only: clean and split never ran, so they send nothing
    assert mail.rcpt_tos == ["ops@example.org"]
    assert mail.subject == (
        f"[sluice] prepare_dataset failed (run {run.run_id}, task validate): "
        f"Validation of raw/{CORRUPT}: FAILED (the file is rejected: nothing is prepared from it)"
    )
    text = mail.text
    assert "DAG:    prepare_dataset\n" in text and f"Run:    {run.run_id}\n" in text
    assert "Task:   validate\n" in text and "Try:    1\n" in text
    assert "/dags/prepare_dataset/runs/" in text and "/tasks/validate" in text  # the log URL
    # The whole exception (its message is the validation report), then the traceback.
    assert "Exception (AirflowFailException):\nValidation of" in text
    assert "wrong separator" in text.split("Traceback:")[0]
    assert 'validate_raw' in text.split("Traceback:")[1]


def test_without_alert_emails_a_failure_sends_no_mail_and_logs_no_warning(corrupt_lake, smtp, monkeypatch, caplog):
    run_failing_prepare(corrupt_lake, monkeypatch, "")
    assert smtp.messages == []
    assert alert_warnings(caplog) == []


def test_a_missing_smtp_connection_is_logged_and_does_not_mask_the_failure(corrupt_lake, monkeypatch, caplog):
    from tasks.data.datalake import open_datalake
    from tasks.data.prepare import partition_for

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    run = run_failing_prepare(corrupt_lake, monkeypatch, "ops@example.org")
    # The failure is the validation's, with its report, as without alerts.
    report = open_datalake(str(corrupt_lake)).read_bytes("intermediate", f"wachttijden/{partition_for(run.run_id)}"
                                                        "/validation.txt").decode()
    assert "FAILED" in report and "wrong separator" in report
    [line] = alert_warnings(caplog)
    assert "no Airflow connection 'smtp_default'" in line and run.run_id in line


def test_the_failure_subject_cuts_a_long_reason_to_its_first_line_and_keeps_the_run():
    from types import SimpleNamespace

    from pipelines._alerts import REASON_CHARS, failure_message

    ti = SimpleNamespace(dag_id="train_model", run_id="dataset_triggered__2026-01-01", task_id="train_candidate",
                         map_index=1, try_number=3, log_url="http://airflow.example/log")
    error = RuntimeError("out of memory " + "x" * 500 + "\nsecond line")
    subject, body = failure_message({"ti": ti, "exception": error})
    prefix = "train_model failed (run dataset_triggered__2026-01-01, task train_candidate[1]): "
    assert subject.startswith(prefix) and subject.endswith("...")
    assert len(subject) == len(prefix) + REASON_CHARS and "second line" not in subject
    assert "Try:    3\n" in body and "Log:    http://airflow.example/log\n" in body
    assert "x" * 500 + "\nsecond line" in body  # the whole message is in the body
