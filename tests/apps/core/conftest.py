"""Fixtures shared by the core app's tests."""

import pytest

S3_BUCKET = "perceptlab-test"


@pytest.fixture
def s3(settings, tmp_path):
    """The media storage on S3, an empty bucket in moto's in-process mock (no server, no network), with the
    local copies under tmp_path/cache; yields a boto3 S3 client."""
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=S3_BUCKET)
        settings.PERCEPTLAB_STORAGE_CACHE_DIR = tmp_path / "cache"
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "core.storage_s3.S3MediaStorage",
                "OPTIONS": {"bucket_name": S3_BUCKET, "region_name": "us-east-1"},
            },
        }
        yield client
