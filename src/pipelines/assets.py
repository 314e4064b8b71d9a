"""Assets shared between DAGs: one DAG produces an asset, the DAGs scheduled on it run after each event."""

from airflow.sdk import Asset

# The event's extra carries the partition written, so train_model reads exactly that run's data.
# Name only: an Asset with a URI scheme makes Airflow load every provider's URI handlers at
# parse time (the amazon one imports boto3, ~1 s).
PREPROCESSED_WACHTTIJDEN = Asset(name="wachttijden_preprocessed")

# A new champion: emitted by train_model's promote task (the evaluation gate said promote) and by
# promote_model (a manual promotion or a rollback); deploy_model is scheduled on it, so the new
# champion is served without a person. The extra: model_name, version, previous_version, reason.
CHAMPION_WACHTTIJDEN = Asset(name="wachttijden_champion")

# The xray use case's new champion (train_images' promote task, promote_model for xray): deploy_xray runs on it.
CHAMPION_XRAY = Asset(name="xray_champion")

# The xray image use case: prepare_images emits its partition (extra: partition, raw_sha256 = the image
# set's snapshot digest), train_images trains on it (its champion is CHAMPION_XRAY above).
PREPROCESSED_XRAY = Asset(name="xray_preprocessed")
