"""The S3-compatible media backend (PERCEPTLAB_STORAGE=s3; docs/deployment-storage.md). A module of its
own so that boto3 is imported only where it is configured."""

from __future__ import annotations

from botocore.exceptions import ClientError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class S3MediaStorage(S3Storage):
    """django-storages' S3Storage with the platform's rules: objects are private (no ACL is sent, so the
    bucket's own policy applies; URLs, if ever asked for, are signed), names are kept as given (a save
    replaces), and an object larger than 16 MiB that is opened as a file spills to a temporary file instead
    of memory. The app streams what it serves (`open_stream`), so no URL reveals an object's name."""

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
