"""X-ray: one grayscale scan (uploaded, or a generated sample) -> the xray model's class probabilities and its
occlusion heat map. The server decodes and checks the file; a refused one shows the server's own message."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app import ui
from app.backends import BackendError, BackendUnavailable
from app.xray_client import SAMPLES, ScanPrediction, sample_scan
from models.xray.schema import MAX_SIDE, MIN_SIDE

UPLOAD = "Upload a scan"
cached_sample = st.cache_data(show_spinner=False)(sample_scan)


cfg = ui.config()
server = ui.xray()
st.title("Classify a chest scan")
st.caption(f"Image model server {cfg.xray_url} (model {cfg.xray_model_name}). The platform's scans are synthetic "
           "(models.xray.generate): this shows the image path end to end, not a medical diagnosis.")
try:
    if not server.ready():
        st.warning(f"The {server.what} at {server.url} answers but has no model {cfg.xray_model_name} ready yet; "
                   "it may still be loading.", icon=":material/hourglass_top:")
except BackendUnavailable as exc:
    st.error(str(exc), icon=":material/cloud_off:")

source = st.radio("Scan", [UPLOAD, *SAMPLES], horizontal=True, label_visibility="collapsed")
if source == UPLOAD:
    uploaded = st.file_uploader(
        f"A grayscale chest scan: PNG or JPEG, each side {MIN_SIDE}-{MAX_SIDE} px",
        type=["png", "jpg", "jpeg"], help="Sent to the model server as it is; the server checks and decodes it.")
    if uploaded is None:
        st.stop()
    name, scan = uploaded.name, uploaded.getvalue()
else:
    seed, pneumonia = SAMPLES[source]
    name, scan = f"sample-{seed}.png", cached_sample(seed, pneumonia)

prediction: ScanPrediction | None = None
with ui.reported(f"Classifying {name}"), st.spinner(f"Asking the {server.what}…"):
    prediction = server.predict(scan)
if prediction is None:
    st.stop()

st.subheader(f"{name}: {prediction.predicted_class}")
cols = st.columns(1 + len(prediction.probabilities))
cols[0].metric("Predicted class", prediction.predicted_class)
for col, (label, probability) in zip(cols[1:], prediction.probabilities.items(), strict=True):
    col.metric(f"P({label})", f"{probability:.4f}")
frame = pd.DataFrame({"class": list(prediction.probabilities), "probability": list(prediction.probabilities.values())})
chart = alt.Chart(frame).mark_bar().encode(
    x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
    y=alt.Y("class:N", sort=None, title=None),
    color=alt.when(alt.datum["class"] == prediction.predicted_class).then(alt.value("#d62728"))
    .otherwise(alt.value("#9e9e9e")),
    tooltip=["class", alt.Tooltip("probability:Q", format=".4f")],
).properties(height=110)
st.altair_chart(chart, width="stretch")

left, right = st.columns(2)
with left:
    st.image(scan, caption=f"The scan as sent ({len(scan) / 1024:.0f} KiB)", width="stretch", output_format="PNG")
with right, ui.reported(f"Explaining {name}"), st.spinner("Computing the occlusion heat map…"):
    try:
        explanation = server.explain(scan)
    except BackendError as exc:  # e.g. 413 when :explain is limited; the probabilities above still stand
        st.info(f"No heat map: {exc}")
    else:
        st.image(explanation.heat_map_png, width="stretch", output_format="PNG",
                 caption=f"Heat map of '{explanation.explained_class}' (model version {explanation.model_version}): "
                 f"red where covering a {explanation.patch} px patch lowers that probability, blue where it raises "
                 f"it, over the scan at the model's input size.")
