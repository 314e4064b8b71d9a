"""Sluice's web app (Streamlit): predictions, explanations, registered models, shadow and data reports.

The data access (model server, MLflow REST, reports, upload checks) lives in plain modules here that
import no Streamlit; the pages under views/ only lay them out.
"""
