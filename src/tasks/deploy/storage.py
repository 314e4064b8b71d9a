"""Where KServe's storage initializer finds a registered model: an MLflow download URI as a `storageUri`."""

from __future__ import annotations

from urllib.parse import urlsplit


def storage_uri_for(download_uri: str, *, artifact_root: str | None = None) -> str:
    """The KServe `storageUri` (ending in "/") for an MLflow model version's download URI.

    KServe's storage initializer reads s3://, gs://, https://<account>.blob.core.windows.net/,
    pvc://, hdfs:// and plain http(s) URLs, but not MLflow's own schemes:
    - `wasbs://container@account.blob.core.windows.net/path` (what MLflow writes for Azure) is
      the same blob as `https://account.blob.core.windows.net/container/path`, so it is rewritten;
      `abfss://` (ADLS Gen2) likewise, through the account's blob endpoint.
    - `mlflow-artifacts:/path` means "ask the tracking server", which proxies its artifact
      store. The storage initializer cannot, so the path is mapped onto the server's
      `--artifacts-destination` (`artifact_root`); without it the URI is rejected.
    - `runs:/`, `models:/` and local paths are not reachable from a pod: rejected.
    """
    uri = download_uri.strip()
    if not uri:
        raise ValueError("empty model download URI")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""

    if scheme == "mlflow-artifacts":
        if not artifact_root:
            raise ValueError(
                f"{uri!r} points into the MLflow tracking server's proxied artifact store, which "
                "KServe's storage initializer cannot read. Set the MLflow server's artifact root "
                "(its --artifacts-destination, e.g. s3://bucket/mlflow or "
                "wasbs://container@account.blob.core.windows.net/mlflow) as "
                "`mlflow_artifacts_destination` so the path can be mapped onto it."
            )
        # mlflow-artifacts:/1/models/m-x/artifacts or mlflow-artifacts://host:port/1/...
        path = urlsplit(uri).path.lstrip("/")
        return storage_uri_for(f"{artifact_root.rstrip('/')}/{path}")

    if scheme in ("wasbs", "wasb", "abfss", "abfs"):
        parts = urlsplit(uri)
        container, _, host = parts.netloc.partition("@")
        if not container or not host:
            raise ValueError(f"{uri!r}: expected {scheme}://<container>@<account>.<endpoint>/<path>")
        account = host.split(".", 1)[0]
        path = parts.path.strip("/")
        return _with_slash(f"https://{account}.blob.core.windows.net/{container}/{path}")

    if scheme in ("s3", "gs", "pvc", "hdfs", "webhdfs", "oci", "hf", "http", "https"):
        return _with_slash(uri)

    if scheme in ("runs", "models"):
        raise ValueError(
            f"{uri!r} is an MLflow reference, not a storage location: resolve it with "
            "MlflowClient.get_model_version_download_uri first"
        )
    raise ValueError(
        f"{uri!r} is not readable by KServe's storage initializer (a local path or an unknown "
        "scheme); store MLflow artifacts on S3, GCS, Azure Blob or a PVC for cluster deployments"
    )


def _with_slash(uri: str) -> str:
    # KServe copies a prefix ending in "/" as a folder; without it an S3/GCS key prefix
    # like .../artifacts would also match .../artifacts-old.
    return uri if uri.endswith("/") else uri + "/"
