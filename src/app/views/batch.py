"""Batch: upload a CSV in the published format -> a prediction per row, as a table and a download."""

from __future__ import annotations

import streamlit as st

from app import ui
from app.batch import PREDICTION, UploadRejected, check_upload, to_csv_bytes, with_predictions

st.title("Predict a file")
ui.backends_caption()
st.markdown(
    "Upload a CSV in the published *wachttijden* format: `;`-separated, cp1252 or UTF-8 (gzip, bzip2 and xz "
    "are read too). Only `TYPE_WACHTTIJD`, `SPECIALISME`, `ROAZ_REGIO` and `TYPE_ZORGINSTELLING` are needed; "
    "rows that cannot be predicted are listed with the reason."
)
choices = ui.choices()
if choices.note:
    st.warning(choices.note, icon=":material/info:")

uploaded = st.file_uploader("CSV file", type=["csv", "txt", "gz", "bz2", "xz"], key="upload")
if uploaded is not None:
    with ui.reported("Predicting the file"):
        try:
            upload = check_upload(uploaded.getvalue(), uploaded.name, choices)
        except UploadRejected as exc:
            st.error("The file cannot be predicted. The validation report:", icon=":material/block:")
            st.code(str(exc), language=None, wrap_lines=True)
            st.stop()
        with st.spinner(f"Predicting {upload.report.valid_rows} row(s)…"):
            result = with_predictions(upload, ui.champion().predict)
        st.success(f"{upload.report.valid_rows} of {upload.report.total_rows} row(s) predicted.",
                   icon=":material/check:")
        if upload.report.invalid_rows:
            with st.expander(f"{upload.report.invalid_rows} row(s) could not be predicted", expanded=True):
                st.code(upload.report.to_text(), language=None, wrap_lines=True)
        st.dataframe(result, hide_index=True, column_config={PREDICTION: st.column_config.NumberColumn(format="%.2f")})
        st.download_button("Download predictions (CSV)", to_csv_bytes(result), file_name=f"predictions-{uploaded.name}"
                           .removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz"), mime="text/csv")
