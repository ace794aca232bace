"""The S3-compatible media backend (PERCEPTLAB_STORAGE=s3; docs/deployment-storage.md). A module of its
own so that boto3 is imported only where it is configured."""

from __future__ import annotations

from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class S3MediaStorage(S3Storage):
    """django-storages' S3Storage with the platform's rules: objects are private (no ACL is sent, so the
    bucket's own policy applies; URLs, if ever asked for, are signed), names are kept as given (a save
    replaces), and an object larger than 16 MiB that is opened as a file spills to a temporary file instead
    of memory. The app streams what it serves (`open_stream`), so no URL reveals an object's name.
    Its failures (`store_errors`) reach callers as core.storage.StorageUnavailable."""

    store_errors = (ClientError, BotoCoreError)
    min_part = 8 * 1024 * 1024  # multipart uploads above this size, in parts of at least this size

    def get_default_settings(self):
        return {
            **super().get_default_settings(),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
            "max_memory_size": 16 * 1024 * 1024,
        }

    def open_stream(self, name: str):
        """(streaming body, size): one GET, read in chunks as the response goes out."""
        key = self._normalize_name(clean_name(name))
        try:
            reply = self.bucket.Object(key).get()
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from err
            raise
        return reply["Body"], reply["ContentLength"]

    def fingerprint(self, name: str) -> str:
        """Size and ETag (one HEAD): a rewritten object gets a new ETag even within the same second."""
        key = self._normalize_name(clean_name(name))
        try:
            head = self.connection.meta.client.head_object(Bucket=self.bucket_name, Key=key)
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from err
            raise
        return f"{head['ContentLength']}:{head['ETag']}"

    def upload(self, name: str, path: Path) -> str:
        """Store a local file under `name`; returns the stored object's fingerprint (as `fingerprint`) from
        the store's own reply to this upload, never from a later request that could see another writer's
        object. One PUT, or a multipart upload (aborted on error) for a large file."""
        key = self._normalize_name(clean_name(name))
        params = self._get_write_parameters(key)
        client = self.connection.meta.client
        size = Path(path).stat().st_size
        with open(path, "rb") as handle:
            if size <= self.min_part:
                reply = client.put_object(Bucket=self.bucket_name, Key=key, Body=handle, **params)
            else:
                reply = self._multipart(client, key, handle, size, params)
        return f"{size}:{reply['ETag']}"

    def _multipart(self, client, key: str, handle, size: int, params: dict) -> dict:
        part_size = max(self.min_part, -(-size // 10_000))  # S3 allows 10,000 parts
        upload = client.create_multipart_upload(Bucket=self.bucket_name, Key=key, **params)
        where = {"Bucket": self.bucket_name, "Key": key, "UploadId": upload["UploadId"]}
        try:
            parts = []
            while chunk := handle.read(part_size):
                number = len(parts) + 1
                reply = client.upload_part(**where, PartNumber=number, Body=chunk)
                parts.append({"ETag": reply["ETag"], "PartNumber": number})
            return client.complete_multipart_upload(**where, MultipartUpload={"Parts": parts})
        except BaseException:
            client.abort_multipart_upload(**where)
            raise
