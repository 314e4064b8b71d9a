"""The data lake in Azure Blob storage: one blob container per data lake container."""

from __future__ import annotations

import contextlib
import os
import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tasks.data.datalake import base as lake

if TYPE_CHECKING:  # the SDK is imported only when an Azure data lake is opened
    from azure.storage.blob import BlobClient, BlobServiceClient

AZURE_CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


class AzureBlobDataLake(lake.DataLake):
    """Containers are blob containers of one storage account, created on first write."""

    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service
        self._ready_containers: set[str] = set()

    def describe(self) -> str:
        return f"Azure Blob account {self.service.account_name}"

    def _blob(self, container: str, path: str) -> BlobClient:
        lake.check_object(container, path)
        return self.service.get_blob_client(container, path)

    @contextlib.contextmanager
    def _errors(self, container: str, path: str) -> Iterator[None]:
        from azure.core.exceptions import (
            AzureError,
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        try:
            yield
        except ResourceNotFoundError as err:
            raise self._not_found(container, path) from err
        except (ResourceExistsError, ResourceModifiedError) as err:
            # upload_blob(overwrite=False) sends If-None-Match: * and reports the 409/412
            # as one of these
            raise self._exists_error(container, path) from err
        except HttpResponseError as err:
            # only the service's error code: the full message may quote request details
            raise lake.DataLakeError(
                f"{container}/{path} in {self.describe()}: HTTP {err.status_code} "
                f"{getattr(err, 'error_code', None) or err.reason}"
            ) from err
        except AzureError as err:
            raise lake.DataLakeError(
                f"{container}/{path} in {self.describe()}: {type(err).__name__} (is the endpoint reachable?)"
            ) from err

    def _ensure_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        if container in self._ready_containers:
            return
        with self._errors(container, ""):
            try:
                self.service.create_container(container)
            except ResourceExistsError:
                pass
        self._ready_containers.add(container)

    def read_bytes(self, container: str, path: str) -> bytes:
        blob = self._blob(container, path)
        with self._errors(container, path):
            return blob.download_blob().readall()

    def write_bytes(self, container: str, path: str, data: bytes, *, overwrite: bool = False) -> None:
        blob = self._blob(container, path)
        self._ensure_container(container)
        with self._errors(container, path):
            # A block blob becomes visible only when committed (Put Blob, or Put Block List
            # after staged blocks for large data), and overwrite=False makes the SDK send
            # If-None-Match: * with that commit, so the check and the write are one step.
            blob.upload_blob(data, overwrite=overwrite)

    def exists(self, container: str, path: str) -> bool:
        blob = self._blob(container, path)
        with self._errors(container, path):
            return blob.exists()

    def list(self, container: str, prefix: str = "") -> list[str]:
        lake.check_prefix(container, prefix)
        client = self.service.get_container_client(container)
        try:
            with self._errors(container, prefix):
                return sorted(client.list_blob_names(name_starts_with=prefix or None))
        except lake.ObjectNotFoundError:
            return []  # the container is created on first write; until then it is empty

    def list_info(self, container: str, prefix: str = "") -> list[lake.ObjectInfo]:
        lake.check_prefix(container, prefix)
        client = self.service.get_container_client(container)
        try:
            with self._errors(container, prefix):
                found = [
                    lake.ObjectInfo(blob.name, blob.size, blob.last_modified, blob.etag)
                    for blob in client.list_blobs(name_starts_with=prefix or None)
                ]
        except lake.ObjectNotFoundError:
            return []
        return sorted(found, key=lambda info: info.path)

    def delete(self, container: str, path: str) -> None:
        blob = self._blob(container, path)
        with self._errors(container, path):
            blob.delete_blob(delete_snapshots="include")

    def download_to(self, container: str, path: str, local_path: pathlib.Path) -> None:
        blob = self._blob(container, path)
        with self._errors(container, path):
            # download_blob fetches the first range, so a missing blob fails here, before a
            # local temp file exists
            stream = blob.download_blob()
            lake.write_atomically(pathlib.Path(local_path), stream.readinto, overwrite=True)

    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        blob = self._blob(container, path)
        self._ensure_container(container)
        with pathlib.Path(local_path).open("rb") as source, self._errors(container, path):
            blob.upload_blob(source, length=os.fstat(source.fileno()).st_size, overwrite=overwrite)


def open_azure(parsed: urllib.parse.SplitResult, connection_string: str | None) -> AzureBlobDataLake:
    from azure.storage.blob import BlobServiceClient

    account = parsed.netloc
    if not account or parsed.path not in ("", "/"):
        raise lake.DataLakeError("Azure data lake URL must be azure://<account-name> with no path")
    connection_string = connection_string or os.environ.get(AZURE_CONNECTION_STRING_ENV)
    if not connection_string:
        raise lake.DataLakeError(
            f"no connection string for Azure Blob account {account}: pass azure_connection_string "
            f"or set the environment variable {AZURE_CONNECTION_STRING_ENV}"
        )
    try:
        service = BlobServiceClient.from_connection_string(connection_string)
    except ValueError:
        # the SDK's message may quote the string, which holds the account key
        raise lake.DataLakeError(f"invalid Azure connection string for account {account}") from None
    if service.account_name != account:
        raise lake.DataLakeError(
            f"the Azure connection string is for account {service.account_name}, "
            f"but the data lake URL names account {account}"
        )
    return AzureBlobDataLake(service)
