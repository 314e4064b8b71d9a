"""Round-trip one task's log through Airflow's real Elasticsearch log IO and our Filebeat settings.

Run in a subprocess by test_log_id_contract.py, with AIRFLOW_CONFIG pointing at the airflow.cfg the
chart renders from our values: the worker side (upload with write_stdout) prints the JSON lines a
task pod prints, those lines go through our Filebeat config (filebeat_sim), and the reader side
(the same class's read) queries the shipped documents exactly as the API server would.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace


def main(params_path: str) -> None:
    params = json.loads(Path(params_path).read_text())

    import airflow.config_templates.airflow_local_settings as local_settings
    from airflow.configuration import conf
    from airflow.providers.elasticsearch.log.es_task_handler import (
        ElasticsearchRemoteLogIO,
        _render_log_id,
    )

    from tests.deploy import filebeat_sim

    remote = local_settings.REMOTE_TASK_LOG
    assert isinstance(remote, ElasticsearchRemoteLogIO), f"remote task log is {type(remote)}"
    results = []
    for case in params["cases"]:
        results.append(run_case(remote, conf, _render_log_id, filebeat_sim, params, case))
    print(json.dumps(results, default=str))


def run_case(remote, conf, render_log_id, filebeat_sim, params, case):
    ti = SimpleNamespace(**case["ti"])
    log_file = Path(case["log_file"])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("".join(json.dumps(record) + "\n" for record in params["records"]))

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        remote.upload(log_file, ti)
    stdout_lines = [line for line in printed.getvalue().splitlines() if line.strip()]

    store = []
    for second, line in enumerate(stdout_lines):
        raw = f"{params['day']}T10:00:{second:02d}.000000000Z stdout F {line}"
        store.append(filebeat_sim.ship(case["beat_config"], raw, case["kubernetes"], case["log_path"]))

    searches = []

    def search(**kwargs):
        searches.append(kwargs)
        return filebeat_sim.search(store, params["index_templates"], **kwargs)

    remote.client = SimpleNamespace(search=search)
    header, messages = remote.read("", ti)
    template = conf.get("elasticsearch", "log_id_template")
    return {
        "name": case["name"],
        "log_id_template": template,
        "expected_log_id": render_log_id(template, ti, ti.try_number),
        "stdout_lines": stdout_lines,
        "shipped": store,
        "searches": searches,
        "header": header,
        "messages": [_parse(m) for m in messages],
    }


def _parse(message):
    try:
        return json.loads(message)
    except ValueError:
        return {"event": message}

if __name__ == "__main__":
    main(sys.argv[1])
