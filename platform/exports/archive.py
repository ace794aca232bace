"""Writing export archive members without holding them whole: images are copied from storage in chunks, JSON
lines are encoded one row at a time. Every member has fixed metadata (date, mode), so that equal content is
equal bytes, and the bytes are those ``ZipFile.writestr`` gives for the whole member (the local header is
rewritten with the real sizes and CRC when a member closes, and deflate's output does not depend on how
its input is split)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

from core.storage import open_stream

ZIP_DATE = (2018, 1, 1, 0, 0, 0)  # fixed member timestamps: same content, same bytes
CHUNK = 256 * 1024  # bytes read or written at a time
# an average JSON line is well under this (judgments ~1 KB): a table with more rows than ZIP64_LIMIT / this
# (262k) may pass 2 GiB, so its member gets zip64 headers from the start, as its size is not known before it
# is written (writestr would choose them by the real size). Smaller tables get the same bytes as writestr.
LINE_BYTES_BOUND = 8 * 1024


def _info(name: str, *, compress: bool, size: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = size  # decides zip64 headers as writestr does
    return info


def member_add(zf: zipfile.ZipFile, name: str, data: bytes, compress: bool = True) -> None:
    """One small member written whole (manifests, .npy votes)."""
    zf.writestr(_info(name, compress=compress), data)


def member_add_file(zf: zipfile.ZipFile, name: str, stored: str, compress: bool = False) -> str:
    """A file of the media storage (core.storage) copied into the archive in chunks; returns its sha256."""
    digest = hashlib.sha256()
    source, size = open_stream(stored)
    with source:
        info = _info(name, compress=compress, size=size)
        with zf.open(info, "w") as dest:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                dest.write(chunk)
    return digest.hexdigest()


def member_add_lines(zf: zipfile.ZipFile, name: str, rows: Iterable[dict], n_rows: int) -> str:
    """A JSON-lines member (sorted keys), encoded row by row and written in chunks of about CHUNK bytes;
    returns its sha256."""
    digest = hashlib.sha256()
    force_zip64 = n_rows * LINE_BYTES_BOUND > zipfile.ZIP64_LIMIT
    with zf.open(_info(name, compress=True), "w", force_zip64=force_zip64) as dest:
        pending, size = [], 0
        for row in rows:
            line = (json.dumps(row, sort_keys=True) + "\n").encode()
            pending.append(line)
            size += len(line)
            if size >= CHUNK:
                chunk = b"".join(pending)
                digest.update(chunk)
                dest.write(chunk)
                pending, size = [], 0
        chunk = b"".join(pending)
        digest.update(chunk)
        dest.write(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
