"""Models: the registered versions with aliases, scores, the gate's decisions, lineage and training curves."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from app.registry import METRICS, registered_versions

cfg = ui.config()
st.title(f"Registered models: {cfg.model_name}")
st.caption(f"From MLflow at {cfg.mlflow_url}")

with ui.reported("Reading the registry"):
    with st.spinner("Reading the registry…"):
        versions = registered_versions(ui.mlflow(), cfg.model_name)
    if not versions:
        st.info(f"No version of {cfg.model_name} is registered yet: the train_model pipeline registers them "
                "(./deploy-local.sh runs it).")
        st.stop()
    aliases = [f"**{alias}** → version {v.version}" for v in versions for alias in v.aliases]
    st.markdown("Aliases: " + (", ".join(aliases) if aliases else "none yet"))
    st.dataframe(pd.DataFrame([v.table_row() for v in versions]), hide_index=True,
                 column_config={m: st.column_config.NumberColumn(format="%.3f") for m in METRICS})

    default = next((i for i, v in enumerate(versions) if "champion" in v.aliases), 0)
    chosen = st.selectbox("Version", versions, index=default,
                          format_func=lambda v: f"version {v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases
                                                                           else ""))
    scores, gate, lineage = st.columns(3)
    with scores:
        st.subheader("Scores (weeks)")
        for name in METRICS:
            value = chosen.metrics.get(name)
            st.metric(name.replace("_", " "), "n/a" if value is None else f"{value:.3f}")
    with gate:
        st.subheader("Gate")
        if chosen.gate:
            st.markdown(f"**{chosen.gate.get('decision', '?')}**: {chosen.gate.get('reason', '')}")
            st.dataframe(pd.DataFrame(sorted(chosen.gate.items()), columns=["tag", "value"]), hide_index=True)
        else:
            st.write("No gate decision on this version (registered before the gate, or not evaluated).")
    with lineage:
        st.subheader("Lineage")
        if chosen.lineage:
            st.dataframe(pd.DataFrame(list(chosen.lineage.items()), columns=["what", "value"]), hide_index=True)
        else:
            st.write("No lineage tags on this version.")
    if chosen.run_id:
        with st.spinner("Fetching the training curves…"):
            curves = ui.mlflow().run_artifact(chosen.run_id, "training_curves.png")
        st.subheader("Training curves")
        if curves:
            st.image(curves, caption=f"run {chosen.run_id}")
        else:
            st.write(f"Run {chosen.run_id} has no training_curves.png.")
