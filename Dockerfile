# Airflow worker image: the official Airflow 3 image plus the project's pinned pipeline runtime.
# DAGs are not baked in: they arrive by git-sync (deploy/airflow/values.yaml). Two variants, chosen
# by TF_VARIANT, both from the base pinned in deploy/versions.env:
#   set -a; . deploy/versions.env; set +a
#   docker build --build-arg AIRFLOW_BASE_IMAGE="$AIRFLOW_BASE_IMAGE" \
#     -t "$AIRFLOW_IMAGE_REPOSITORY:$AIRFLOW_IMAGE_TAG" .
#   docker build --build-arg AIRFLOW_BASE_IMAGE="$AIRFLOW_BASE_IMAGE" --build-arg TF_VARIANT=gpu \
#     -t "$AIRFLOW_IMAGE_REPOSITORY:$AIRFLOW_GPU_IMAGE_TAG" .
# cpu (default): requirements.txt (tensorflow-cpu), for every task pod. gpu: requirements-gpu.txt
# (tensorflow[and-cuda], same TensorFlow version, CUDA libraries as wheels; the node supplies the
# driver), the image of the train task's pod override (variables/<env>/airflow_pod_overrides.json).
# No default base on purpose: deploy/versions.env stays the one place the version is pinned.
ARG AIRFLOW_BASE_IMAGE
FROM ${AIRFLOW_BASE_IMAGE}
ARG TF_VARIANT=cpu

# The official image installs Python packages as the airflow user; the requirement files pin
# apache-airflow itself to the image's version, so pip cannot move Airflow. Both files are copied
# under their variant's name; any other TF_VARIANT fails the build (no such file).
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/sluice/requirements-cpu.txt
COPY --chown=airflow:0 requirements-gpu.txt /opt/sluice/requirements-gpu.txt
RUN pip install --no-cache-dir -r "/opt/sluice/requirements-${TF_VARIANT}.txt"

# Liveness is the chart's business (probes per component); task pods are short-lived.
HEALTHCHECK NONE
