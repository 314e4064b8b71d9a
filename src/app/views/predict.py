"""Predict: one row from a form -> the waiting time in weeks and its explanation (and the challenger's)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from app.backends import BackendError
from app.model_client import ModelServer, answers
from models.wachttijden.schema import FEATURES

st.title("Predict a waiting time")
ui.backends_caption()
choices = ui.choices()
if choices.note:
    st.warning(choices.note, icon=":material/info:")
elif choices.version:
    st.caption(f"Choices from the vocabularies of registered version {choices.version} (the champion).")

LABELS = {"TYPE_WACHTTIJD": "Type of wait", "SPECIALISME": "Specialism", "ROAZ_REGIO": "Acute care region (ROAZ)",
          "TYPE_ZORGINSTELLING": "Type of institution"}

with st.form("predict"):
    row = {}
    for name in FEATURES:
        options = choices.vocabularies.get(name, [])
        is_open = name in choices.open_features
        row[name] = st.selectbox(
            f"{LABELS[name]} ({name})", options, index=0 if options else None, key=f"field-{name}",
            # Open features take values the model never saw (answered through its out-of-vocabulary bucket).
            accept_new_options=is_open or not options,
            help="Type to search; a new value is accepted." if is_open or not options else "Type to search.",
        )
    submitted = st.form_submit_button("Predict", type="primary")


def show_answer(server: ModelServer, label: str, row: dict[str, str]) -> None:
    """One model's prediction (:predict) and explanation (:explain) for `row`, or why there is none."""
    st.subheader(label)
    with ui.reported(f"Prediction by the {server.what}"), st.spinner(f"Asking the {server.what}…"):
        (prediction,) = server.predict([row])
        st.metric("Predicted waiting time", f"{prediction:.2f} weeks")
        try:
            explanation = server.explain(row)
        except BackendError as exc:  # e.g. 501: a model logged without a background sample
            st.info(f"No explanation: {exc}")
            return
        st.caption(f"Model version {explanation.model_version}. Base value (average prediction over the background "
                   f"sample) {explanation.base_value:.2f} weeks; each bar is what that input adds or takes away.")
        frame = pd.DataFrame({"input": list(explanation.attributions),
                              "weeks": list(explanation.attributions.values())})
        st.bar_chart(frame, x="input", y="weeks", horizontal=True, height=220)


if submitted:
    missing = [name for name in FEATURES if not row.get(name)]
    if missing:
        st.error(f"Choose or type a value for {', '.join(missing)}.")
        st.stop()
    challenger = ui.challenger()
    challenger_ready = challenger is not None and challenger.ready()
    if challenger_ready:
        left, right = st.columns(2)
        with left:
            show_answer(ui.champion(), "Champion", row)
        with right:
            show_answer(challenger, "Challenger", row)
    else:
        show_answer(ui.champion(), "Champion", row)
        if challenger is not None:
            st.caption(f"Mirroring: no challenger answers at {challenger.url} (start it with "
                       "./deploy-local.sh --mirror), so only the champion is shown.")
    router = ui.config().router_url
    if router and answers(f"{router}/healthz"):
        st.caption(f"Mirroring router at {router} is up: traffic through it is copied to the challenger.")
