"""Entry point of the web app: `streamlit run src/app/main.py` (see app.launch for the options it runs with)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not "pages/": Streamlit would list that folder's files as pages of its own beside these.
PAGES = Path(__file__).resolve().with_name("views")

st.set_page_config(page_title="Sluice", page_icon=":material/water:", layout="wide")
navigation = st.navigation([
    st.Page(PAGES / "predict.py", title="Predict", icon=":material/calculate:", default=True),
    st.Page(PAGES / "batch.py", title="Batch", icon=":material/table:", url_path="batch"),
    st.Page(PAGES / "xray.py", title="X-ray", icon=":material/radiology:", url_path="xray"),
    st.Page(PAGES / "models.py", title="Models", icon=":material/inventory_2:", url_path="models"),
    st.Page(PAGES / "shadow.py", title="Shadow", icon=":material/compare_arrows:", url_path="shadow"),
    st.Page(PAGES / "data.py", title="Data", icon=":material/dataset:", url_path="data"),
])
navigation.run()
