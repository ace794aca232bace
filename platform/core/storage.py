"""Every file the platform keeps goes through Django's storage API (``settings.STORAGES["default"]``):
stimuli, source photo sets, import uploads, feature caches, k-means trunks, models and their bundles,
exports. Names are media-relative (``stimuli/<sha256>.png``, ``features/<study>/alex-<digest>-<part>.npy``),
so the same rows work on every backend, and a worker on another machine with an empty local disk reads and
writes the same files as the web process.

Backends (settings ``PERCEPTLAB_STORAGE``; docs/deployment-storage.md):

- ``local`` (default): `LocalMediaStorage`, a FileSystemStorage under MEDIA_ROOT that saves under the exact
  name asked for, atomically (a temporary file renamed into place): readers never see half a file, and a
  second save of a name replaces it instead of inventing ``name_AbC12.png``.
- ``s3``: `core.storage_s3.S3MediaStorage` (django-storages), private objects, signed URLs only.

Code that needs a real file on disk (numpy's .npz, torch.save, zip writers) uses `local_copy` (read
through: the storage's own file when it is local, else a copy under PERCEPTLAB_STORAGE_CACHE_DIR, checked
against the object's fingerprint unless the name is content-addressed or versioned) and `writing`
(write back: a temporary local path that becomes the object when the block ends without an error).

Every function here that takes a name checks it first (`checked_name`): no name climbs between folders
on any backend, whatever a caller forgot to check. A store that fails (on S3 botocore's errors: throttling,
an outage, a changed key or policy) raises one `StorageUnavailable`, which the API answers as 503."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse

from core.exceptions import ApplicationError

CHUNK = 1024 * 1024
logger = logging.getLogger(__name__)


class StorageUnavailable(ApplicationError):
    """The media store failed (not a missing file: that stays FileNotFoundError). Answered as 503: the
    client may retry; nothing about the store's error reaches it."""

    def __init__(self):
        super().__init__("the file store is unavailable; try again shortly", status_code=503)


def checked_name(name: str) -> str:
    """`name` when it is a plain media-relative name; SuspiciousFileOperation otherwise: empty, absolute,
    a backslash (S3 reads it as a slash), a NUL, or an empty, "." or ".." part. One rule for every backend
    (FileSystemStorage allows ".." that stays inside MEDIA_ROOT; S3 strips a leading "/")."""
    if (
        not isinstance(name, str)
        or "\\" in name
        or "\x00" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise SuspiciousFileOperation(f"refused media name {name!r}")
    return name


@contextmanager
def _store(name: str) -> Iterator[None]:
    """Around every call that reaches the store: the name checked, the backend's errors (its
    ``store_errors``) turned into StorageUnavailable."""
    checked_name(name)
    try:
        yield
    except getattr(media(), "store_errors", ()) as exc:
        logger.warning("media store error on %s: %s", name, exc)
        raise StorageUnavailable() from exc


class LocalMediaStorage(FileSystemStorage):
    """MEDIA_ROOT on the local disk, with exact names and atomic saves (see the module docstring)."""

    def get_available_name(self, name, max_length=None):
        return name  # the platform's names are content-addressed or versioned: a save replaces

    def _save(self, name, content):
        final = Path(self.path(name))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid4().hex}.part")
        try:
            with open(tmp, "wb") as handle:
                for chunk in content.chunks(CHUNK):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if self.file_permissions_mode is not None:
                os.chmod(tmp, self.file_permissions_mode)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return name

    def open_stream(self, name: str):
        """(binary file, size) for reading in chunks."""
        handle = open(self.path(name), "rb")  # noqa: SIM115 - the caller (a response) closes it
        return handle, os.fstat(handle.fileno()).st_size


def media() -> Storage:
    return storages["default"]


def is_local() -> bool:
    """True when the storage is a directory of this machine (no copies needed to read or write)."""
    return isinstance(media(), FileSystemStorage)


def exists(name: str) -> bool:
    """Whether `name` is stored (False for no name at all)."""
    if not name:
        return False
    with _store(name):
        return media().exists(name)


def delete(name: str) -> None:
    """Delete a file, and this machine's copy of it; a missing one is no error."""
    with _store(name):
        media().delete(name)
    if not is_local():
        copy = _cache_path(name)
        copy.unlink(missing_ok=True)
        _stamp_file(copy).unlink(missing_ok=True)


def listdir(prefix: str) -> list[str]:
    """Names of the files directly under `prefix` (none when it does not exist)."""
    with _store(prefix):
        try:
            return sorted(media().listdir(prefix)[1])
        except FileNotFoundError:
            return []


def delete_tree(prefix: str) -> None:
    """Delete every file under `prefix` (a source set's folder), recursively."""
    storage = media()
    with _store(prefix):
        try:
            folders, files = storage.listdir(prefix)
        except FileNotFoundError:
            return
    for name in files:
        delete(f"{prefix}/{name}")
    for folder in folders:
        delete_tree(f"{prefix}/{folder}")
    if is_local():
        shutil.rmtree(storage.path(prefix), ignore_errors=True)


def read_bytes(name: str) -> bytes:
    """A whole (small) file: a stimulus, a heads file (one GET on S3). FileNotFoundError when missing."""
    with _store(name):
        handle, _size = open_stream(name)
        with handle:
            return handle.read()


def save_bytes(name: str, data: bytes) -> None:
    """Write `data` under exactly `name`, replacing what was there."""
    with _store(name):
        _saved(name, media().save(name, ContentFile(data)))


def save_file(name: str, path: Path) -> None:
    """Copy a local file to `name` (streamed: a multipart upload on S3)."""
    with _store(name), open(path, "rb") as handle:
        _saved(name, media().save(name, File(handle, name=Path(name).name)))


def save_stream(name: str, fileobj) -> None:
    """Copy an open binary file (an upload) to `name` from its start, in chunks."""
    fileobj.seek(0)
    with _store(name):
        _saved(name, media().save(name, File(fileobj, name=Path(name).name)))


def save_if_absent(name: str, content: bytes | Path) -> bool:
    """Store a content-addressed file (bytes, or a local file) unless its name is stored already (same
    name, same bytes); returns whether it was written. A local storage never replaces the file: it links
    a complete temporary file into place, which fails when the name exists; where hard links fail (another
    file system, or one without links: CIFS, many FUSE mounts) a complete copy is renamed into place."""
    if not is_local():
        if exists(name):
            return False
        if isinstance(content, bytes):
            save_bytes(name, content)
        else:
            save_file(name, content)
        return True
    target = local_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid4().hex}.part")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        try:
            os.link(tmp if isinstance(content, bytes) else content, target)
        except FileExistsError:
            return False
        except OSError:  # no hard link here: a complete copy renamed into place (same bytes if raced)
            if target.is_file():
                return False
            if not isinstance(content, bytes):
                shutil.copyfile(content, tmp)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def publish_local(names) -> int:
    """Store the content-addressed files that were written straight into ``local_path(name)`` (a build's
    stimuli) and that the storage lacks; returns how many were uploaded. Nothing to do when the storage
    is local: they are in place already."""
    if is_local():
        return 0
    return sum(save_if_absent(name, local_path(name)) for name in sorted(set(names)))


def _saved(asked: str, got: str) -> None:
    if got != asked:  # a backend that renames would orphan every row naming the file
        raise RuntimeError(f"the media storage saved {asked!r} as {got!r}; it must keep names")


def open_stream(name: str):
    """(binary file, size) to read `name` in chunks without copying it first; FileNotFoundError when it
    is missing. The caller closes the file."""
    storage = media()
    with _store(name):
        if hasattr(storage, "open_stream"):
            return storage.open_stream(name)
        handle = storage.open(name, "rb")
        return handle, handle.size


def stream_response(
    name: str, *, content_type: str, filename: str | None = None, as_attachment: bool = False
) -> FileResponse:
    """A response streaming a stored file from any backend (never a redirect to the storage: on S3 the
    object's URL would show its content-addressed name). Without `filename` it carries no file name."""
    handle, length = open_stream(name)
    response = FileResponse(
        handle, content_type=content_type, as_attachment=as_attachment, filename=filename or ""
    )
    if not filename and "Content-Disposition" in response:
        del response["Content-Disposition"]  # it would carry the file's (content-hash) name
    response["Content-Length"] = str(length)
    return response


# --- local files for code that needs a path -------------------------------------------------------------
def _cache_path(name: str) -> Path:
    return Path(settings.PERCEPTLAB_STORAGE_CACHE_DIR) / checked_name(name)


def local_path(name: str) -> Path:
    """Where `local_copy` and `writing` keep the file (or folder) `name` on this machine: the storage's own
    path when it is local, else under PERCEPTLAB_STORAGE_CACHE_DIR."""
    if is_local():
        return Path(media().path(checked_name(name)))
    return _cache_path(name)


def _fingerprint(name: str) -> str:
    """What changes when a stored file is rewritten: size and ETag on S3 (one HEAD request)."""
    storage = media()
    if hasattr(storage, "fingerprint"):
        return storage.fingerprint(name)
    return f"{storage.size(name)}:{storage.get_modified_time(name).timestamp()}"


def _stamp_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.stamp")


@contextmanager
def _copy_locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the local copy `path` and its stamp, between the threads and processes sharing
    this cache: an flock on the copy's folder (no lock file to leave behind; released when a process
    dies). Replacing a copy and writing its stamp are two steps: without it, two refreshes interleave and
    leave old bytes stamped with the new object's fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock


def _install_copy(path: Path, tmp: Path, stamp: str | None) -> None:
    """Put a complete local file in place as the copy `path`, stamped (under `_copy_locked` when stamped).
    The stamp goes first, so that no reader trusts the new bytes under the old stamp, then comes back."""
    _stamp_file(path).unlink(missing_ok=True)
    os.replace(tmp, path)
    if stamp is not None:
        _stamp_file(path).write_text(stamp)


def _fetch(name: str, path: Path, stamp: str | None) -> None:
    """Copy the stored `name` to the local `path` (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid4().hex}.part")
    try:
        source, _length = open_stream(name)
        with source, open(tmp, "wb") as handle:
            while chunk := source.read(CHUNK):
                handle.write(chunk)
        _install_copy(path, tmp, stamp)
    finally:
        tmp.unlink(missing_ok=True)


def download(name: str, path: Path) -> None:
    """Copy the stored `name` to the local file `path`, which the caller owns (and removes)."""
    with _store(name):
        _fetch(name, Path(path), None)


def local_copy(name: str, *, immutable: bool = False) -> Path:
    """A local path holding the stored file `name`, for reading (FileNotFoundError when it is not stored).
    A local storage's own file; else a cached copy, fetched when missing or, unless `immutable` (a
    content-addressed or versioned name), when the object's fingerprint differs from the copy's stamp.
    The fingerprint is read before the bytes: a copy is never stamped newer than what it holds."""
    path = local_path(name)
    if is_local():
        if not path.is_file():
            raise FileNotFoundError(name)
        return path
    with _store(name):
        if immutable:
            if not path.is_file():
                _fetch(name, path, None)
            return path
        with _copy_locked(path):
            stamp = _fingerprint(name)
            with contextlib.suppress(OSError):
                if path.is_file() and _stamp_file(path).read_text() == stamp:
                    return path
            _fetch(name, path, stamp)
    return path


def store_local(name: str, path: Path, *, keep_local: bool = False) -> None:
    """Make a finished local file, written under ``local_path(name)``'s folder, the stored file `name`
    (replacing it): fsynced and renamed into place on a local storage; uploaded otherwise, then removed
    or, with `keep_local`, kept as the local copy, stamped with the fingerprint the upload itself returned
    (a HEAD afterwards could see another writer's object and vouch for our bytes as theirs)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    final = local_path(name)
    if is_local():
        os.replace(path, final)
        return
    if not keep_local:
        save_file(name, path)
        path.unlink(missing_ok=True)
        return
    with _store(name):
        stamp = media().upload(name, path)
    with _copy_locked(final):
        _install_copy(final, path, stamp)


@contextmanager
def writing(name: str, *, keep_local: bool = False) -> Iterator[Path]:
    """A temporary local path (same suffix as `name`) that becomes the stored file `name` when the block
    ends without an error (`store_local`). Nothing is stored after an error."""
    final = local_path(name)  # the name checked
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid4().hex}{final.suffix}")
    try:
        yield tmp
        store_local(name, tmp, keep_local=keep_local)
    finally:
        tmp.unlink(missing_ok=True)
