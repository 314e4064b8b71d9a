# Airflow worker image: the official Airflow 3 image plus the project's pinned pipeline runtime.
# DAGs are not baked in: they arrive by git-sync (deploy/airflow/values.yaml). Build with the base
# pinned in deploy/versions.env, e.g.
#   set -a; . deploy/versions.env; set +a
#   docker build --build-arg AIRFLOW_BASE_IMAGE="$AIRFLOW_BASE_IMAGE" \
#     -t "$AIRFLOW_IMAGE_REPOSITORY:$AIRFLOW_IMAGE_TAG" .
# No default on purpose: deploy/versions.env stays the one place the version is pinned.
ARG AIRFLOW_BASE_IMAGE
FROM ${AIRFLOW_BASE_IMAGE}

# The official image installs Python packages as the airflow user; requirements.txt pins
# apache-airflow itself to the image's version, so pip cannot move Airflow.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/sluice/requirements.txt
RUN pip install --no-cache-dir -r /opt/sluice/requirements.txt

# Liveness is the chart's business (probes per component); task pods are short-lived.
HEALTHCHECK NONE
