"""Data: the latest validation report of a raw file and the latest drift report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from app.reports import latest_drift_report_in_mlflow, latest_partition_report

cfg = ui.config()
st.title("Data checks")

st.header("Validation")
if cfg.datalake_dir is None:
    st.info("Validation reports are read from a local data-lake folder (SLUICE_APP_DATALAKE_DIR, set by "
            "./deploy-local.sh); in a cluster they are in the lake under intermediate/<dataset>/<partition>/.")
    validation = None
else:
    with ui.reported("Reading the validation report"):
        validation = latest_partition_report(cfg.datalake_dir, cfg.model_name, "validation.json")
        if validation is None:
            st.info(f"No validation report in {cfg.datalake_dir} yet: prepare_dataset writes one per raw file.")
if validation is not None:
    report = validation.report
    (st.success if report.get("ok") else st.error)(
        f"{report.get('source')}: {'PASSED' if report.get('ok') else 'FAILED'}: {report.get('total_rows')} rows, "
        f"{report.get('valid_rows')} valid, {report.get('invalid_rows')} invalid")
    st.caption(validation.where)
    for error in report.get("errors", []):
        st.error(error)
    if report.get("row_issues"):
        examples = report.get("examples", {})
        st.dataframe(pd.DataFrame([{"rule": rule, "rows": count, "examples": ", ".join(examples.get(rule, []))}
                                   for rule, count in sorted(report["row_issues"].items())]), hide_index=True)
    for note in report.get("notes", []):
        st.caption(f"note: {note}")

st.header("Drift")
with ui.reported("Reading the drift report"):
    drift = latest_partition_report(cfg.datalake_dir, cfg.model_name, "drift.json") if cfg.datalake_dir else None
    if drift is None:
        with st.spinner("Reading the latest drift run from MLflow…"):
            drift = latest_drift_report_in_mlflow(ui.mlflow(), cfg.model_name)
    if drift is None:
        st.info("No drift report yet: prepare_dataset compares each new raw file with the champion's training data.")
    else:
        report = drift.report
        status = str(report.get("status", "?"))
        {"ok": st.success, "skipped": st.info}.get(status, st.warning)(
            f"Drift {status.upper()}: " + ("; ".join(report.get("drifted", [])) or report.get("reason")
                                          or "no drift above the thresholds"))
        st.caption(f"{drift.where} · partition {report.get('partition')} · created {report.get('created_at')}")
        features = report.get("features") or {}
        if features:
            st.dataframe(pd.DataFrame([{"feature": name, "PSI": f.get("psi"), "drifted": f.get("drifted")}
                                       for name, f in features.items()]), hide_index=True)
        target = report.get("target")
        if target:
            st.write(f"Target {target.get('name')}: KS statistic {target.get('ks_statistic')}, p-value "
                     f"{target.get('p_value')}; mean {target.get('reference', {}).get('mean')} → "
                     f"{target.get('current', {}).get('mean')} weeks")
