"""Task logic of the Sluice pipelines: plain typed functions with no Airflow import."""
