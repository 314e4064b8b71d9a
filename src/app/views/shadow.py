"""Shadow: the latest comparison of the challenger's mirrored answers with the champion's."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from app.reports import latest_shadow_report

cfg = ui.config()
st.title("Shadow comparison")
st.caption(f"The latest compare_shadow run in MLflow at {cfg.mlflow_url}")


def ms(value) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


with ui.reported("Reading the shadow report"):
    with st.spinner("Reading the latest shadow report…"):
        found = latest_shadow_report(ui.mlflow(), cfg.model_name)
    if found is None:
        st.info("No shadow report yet. Serve champion and challenger behind the router (./deploy-local.sh --mirror), "
                "send traffic through it (./scripts/perform-prediction-sequence.sh), then trigger the "
                "compare_shadow DAG in Airflow.")
        st.stop()
    report = found.report
    st.caption(found.where)
    agreement = report.get("agreement_rate")
    cols = st.columns(4)
    cols[0].metric(f"Agreement (≤ {report.get('tolerance_weeks', 1):g} weeks)",
                   "n/a" if agreement is None else f"{agreement:.1%}")
    cols[1].metric("Mean |difference|", "n/a" if report.get("mean_abs_diff") is None
                   else f"{report['mean_abs_diff']:.3f} weeks")
    cols[2].metric("Max |difference|", "n/a" if report.get("max_abs_diff") is None
                   else f"{report['max_abs_diff']:.3f} weeks")
    compared = f"{report.get('compared_requests', 0)} / {report.get('compared_rows', 0)}"
    cols[3].metric("Compared requests / rows", compared)
    st.dataframe(pd.DataFrame({
        "": ["versions", "requests", "failures", "latency p50", "latency p95"],
        "champion": [", ".join(report.get("champion_versions", [])), report.get("champion_requests"),
                     report.get("champion_failures"), ms(report.get("champion_latency_p50_ms")),
                     ms(report.get("champion_latency_p95_ms"))],
        "shadow": [", ".join(report.get("shadow_versions", [])), report.get("mirrored_requests"),
                   report.get("shadow_failures"), ms(report.get("shadow_latency_p50_ms")),
                   ms(report.get("shadow_latency_p95_ms"))],
    }).astype(str), hide_index=True)
    histogram = report.get("difference_histogram") or {}
    st.subheader("|shadow − champion| per row (weeks)")
    if histogram.get("counts"):
        edges = histogram["edges"]
        bins = [f"{a:.2f}–{b:.2f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        st.bar_chart(pd.DataFrame({"difference (weeks)": bins, "rows": histogram["counts"]}),
                     x="difference (weeks)", y="rows")
    else:
        st.write("This report holds no histogram (no compared rows, or made before reports carried one).")
    if report.get("shadow_errors"):
        st.subheader("Shadow errors")
        st.dataframe(pd.DataFrame(list(report["shadow_errors"].items()), columns=["error", "count"]), hide_index=True)
