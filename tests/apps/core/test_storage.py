"""core.storage: every file through Django's storage API. The local backend keeps exact names and saves
atomically; the S3 backend (moto's in-process mock, no network) keeps objects private; local copies are
refreshed when a mutable object changes; nothing half-written is ever stored; names cannot climb out."""

import hashlib

import pytest
from django.core.exceptions import SuspiciousFileOperation

from core import storage
from tests.apps.core.conftest import S3_BUCKET as BUCKET


def _leftovers(root) -> list[str]:
    """Temporary files left behind (a local copy's .stamp is not one)."""
    return sorted(
        p.name for p in root.rglob("*") if p.is_file() and p.name.startswith(".") and p.suffix != ".stamp"
    )


def test_the_local_backend_keeps_exact_names_and_replaces_whole_files(settings):
    storage.save_bytes("models/s/heads.pth", b"first")
    storage.save_bytes("models/s/heads.pth", b"second")  # Django's default would store heads_AbC12.pth
    assert storage.listdir("models/s") == ["heads.pth"]
    assert storage.read_bytes("models/s/heads.pth") == b"second"
    assert _leftovers(settings.MEDIA_ROOT) == []


def test_a_content_addressed_file_is_never_replaced(settings):
    name = f"stimuli/{hashlib.sha256(b'png').hexdigest()}.png"
    assert storage.save_if_absent(name, b"png") is True
    assert storage.save_if_absent(name, b"other bytes") is False
    assert storage.read_bytes(name) == b"png" and _leftovers(settings.MEDIA_ROOT) == []


def test_writing_stores_nothing_after_an_error(settings):
    with pytest.raises(RuntimeError), storage.writing("exports/s/study-v1.zip") as tmp:
        tmp.write_bytes(b"PK half an archive")
        raise RuntimeError("killed mid-write")
    assert not storage.exists("exports/s/study-v1.zip") and _leftovers(settings.MEDIA_ROOT) == []
    with storage.writing("exports/s/study-v1.zip") as tmp:
        assert tmp.suffix == ".zip"  # numpy and torch writers keep their suffix
        tmp.write_bytes(b"PK whole")
    assert storage.read_bytes("exports/s/study-v1.zip") == b"PK whole"


@pytest.mark.parametrize("name", ["../secret_key", "stimuli/../../secret_key", "/etc/hostname"])
def test_names_cannot_leave_the_storage(name, settings, tmp_path):
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = tmp_path / "cache"
    (tmp_path / "secret_key").write_text("s3cret")
    with pytest.raises(SuspiciousFileOperation):
        storage.read_bytes(name)
    with pytest.raises(SuspiciousFileOperation):
        storage.save_bytes(name, b"x")


def test_a_missing_file_is_file_not_found_everywhere():
    for call in (storage.read_bytes, storage.open_stream, storage.local_copy):
        with pytest.raises(FileNotFoundError):
            call("features/none/alex-0.npz")


def test_the_settings_select_the_backend_from_the_environment(tmp_path, settings_probe):
    expr = "settings.STORAGES['default']['BACKEND'], settings.STORAGES['default'].get('OPTIONS', {})"
    local = settings_probe("config.settings.local", {"PERCEPTLAB_DATA_DIR": str(tmp_path)}, expr)
    assert local.returncode == 0, local.stderr
    assert "core.storage.LocalMediaStorage" in local.stdout
    env = {
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
        "PERCEPTLAB_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": "b",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_SECRET_ACCESS_KEY": "never-in-settings",
    }
    s3 = settings_probe("config.settings.local", env, expr)
    assert s3.returncode == 0, s3.stderr
    assert "core.storage_s3.S3MediaStorage" in s3.stdout and "'bucket_name': 'b'" in s3.stdout
    assert "never-in-settings" not in s3.stdout  # boto3 reads the credentials from the environment itself
    for bad in (
        {"PERCEPTLAB_STORAGE": "s3"},
        {"PERCEPTLAB_STORAGE": "ftp"},
        {**env, "PERCEPTLAB_IMAGE_ACCEL_HEADER": "X-Accel-Redirect"},  # nothing on disk for nginx to send
    ):
        refused = settings_probe("config.settings.local", {"PERCEPTLAB_DATA_DIR": str(tmp_path), **bad}, expr)
        assert refused.returncode != 0 and "PERCEPTLAB_STORAGE" in refused.stderr


def test_the_test_settings_ignore_the_shells_storage_and_opt_in_with_their_own_variable(
    tmp_path, settings_probe
):
    """A developer's exported S3 settings must not send the suite's files to their bucket."""
    expr = "settings.STORAGES['default']['BACKEND'], settings.PERCEPTLAB_STORAGE"
    shell = {"PERCEPTLAB_DATA_DIR": str(tmp_path), "PERCEPTLAB_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "b"}
    followed = settings_probe("config.settings.test", shell, expr)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.split() == ["core.storage.LocalMediaStorage", "local"]
    chosen = settings_probe("config.settings.test", {**shell, "PERCEPTLAB_TEST_STORAGE": "s3"}, expr)
    assert chosen.returncode == 0, chosen.stderr
    assert "core.storage_s3.S3MediaStorage" in chosen.stdout


# --- S3 (moto's in-process mock) ---------------------------------------------------------------------------


def test_s3_objects_are_private_and_named_as_asked(s3, settings):
    storage.save_bytes("models/s/heads.pth", b"one")
    storage.save_bytes("models/s/heads.pth", b"two")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["models/s/heads.pth"] and storage.read_bytes("models/s/heads.pth") == b"two"
    grants = s3.get_object_acl(Bucket=BUCKET, Key="models/s/heads.pth")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only: no public read
    assert all(g["Grantee"].get("URI") is None for g in grants)
    assert not storage.is_local()
    assert not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*"))


def test_s3_local_copies_follow_a_changed_object_unless_it_is_immutable(s3, settings):
    import os

    storage.save_bytes("features/s/alex-d.npz", b"100 items")
    path = storage.local_copy("features/s/alex-d.npz")
    assert path.read_bytes() == b"100 items" and path.is_relative_to(settings.PERCEPTLAB_STORAGE_CACHE_DIR)
    storage.save_bytes("features/s/alex-d.npz", b"200 items")  # rewritten elsewhere: same size, same second
    assert storage.local_copy("features/s/alex-d.npz").read_bytes() == b"200 items"
    storage.save_bytes("stimuli/a.png", b"png")
    cached = storage.local_copy("stimuli/a.png", immutable=True)
    os.utime(cached, (0, 0))
    assert storage.local_copy("stimuli/a.png", immutable=True) == cached  # no request: same name, same bytes


def test_s3_writing_uploads_whole_files_and_keeps_a_local_copy_on_request(s3, settings):
    with pytest.raises(RuntimeError), storage.writing("features/s/alex-d.npz", keep_local=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert not storage.exists("features/s/alex-d.npz")
    with storage.writing("features/s/alex-d.npz", keep_local=True) as tmp:
        tmp.write_bytes(b"whole")
    assert s3.get_object(Bucket=BUCKET, Key="features/s/alex-d.npz")["Body"].read() == b"whole"
    assert storage.local_path("features/s/alex-d.npz").read_bytes() == b"whole"
    with storage.writing("exports/s/v1.zip") as tmp:
        tmp.write_bytes(b"PK")
    assert storage.exists("exports/s/v1.zip") and not storage.local_path("exports/s/v1.zip").exists()
    assert _leftovers(settings.PERCEPTLAB_STORAGE_CACHE_DIR) == []


def test_s3_streams_without_naming_the_object_and_deletes_folders(s3):
    name = f"stimuli/{'a' * 64}.png"
    storage.save_bytes(name, b"\x89PNG data")
    response = storage.stream_response(name, content_type="image/png")
    assert b"".join(response.streaming_content) == b"\x89PNG data"
    assert response["Content-Length"] == "9" and "Content-Disposition" not in response
    assert "Location" not in response and "ETag" not in response
    for n in ("a.png", "b.jpg"):
        storage.save_bytes(f"sources/set/{n}", b"x")
    storage.save_bytes("sources/other/c.png", b"x")
    assert storage.listdir("sources/set") == ["a.png", "b.jpg"]
    storage.delete_tree("sources/set")
    assert storage.listdir("sources/set") == [] and storage.exists("sources/other/c.png")
