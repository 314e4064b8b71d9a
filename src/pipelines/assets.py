"""Assets shared between DAGs: prepare_dataset produces them, train_model is scheduled on them."""

from airflow.sdk import Asset

# The event's extra carries the partition written, so train_model reads exactly that run's data.
# Name only: an Asset with a URI scheme makes Airflow load every provider's URI handlers at
# parse time (the amazon one imports boto3, ~1 s).
PREPROCESSED_WACHTTIJDEN = Asset(name="wachttijden_preprocessed")
