"""Workers and their platform context: salted ids (the raw platform id is never stored), the client hash
that caps open assignments per network, and the Prolific / MTurk fields a start keeps."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlparse

from django.conf import settings
from django.db import IntegrityError, transaction

from core.exceptions import ApplicationError
from core.net import client_key
from judgments.models import CrowdPlatform, Worker


def _salt() -> bytes:
    salt = (
        settings.WORKER_ID_SALT
        or hashlib.sha256(b"perceptlab-worker-id:" + settings.SECRET_KEY.encode()).hexdigest()
    )
    return salt.encode()


def worker_hash(*, platform: str, external_id: str) -> str:
    """Salted HMAC-SHA256 of a platform id; the raw id is never stored."""
    return hmac.new(_salt(), f"{platform}:{external_id}".encode(), hashlib.sha256).hexdigest()


def client_hash(ip: str) -> str:
    """Salted HMAC-SHA256 of a client address as core.net counts clients (IPv4 address, IPv6 /48 by
    default): what an assignment keeps to cap open assignments per client. The raw address is never
    stored."""
    return hmac.new(_salt(), f"client:{client_key(ip)}".encode(), hashlib.sha256).hexdigest()


def worker_get_or_create(*, platform: str, external_id: str, is_simulated: bool = False) -> Worker:
    if platform not in CrowdPlatform.values:
        raise ApplicationError(f"unknown platform {platform!r}", {"valid": CrowdPlatform.values})
    external_id = (external_id or "").strip()
    if not 1 <= len(external_id) <= 128:
        raise ApplicationError("a worker id of 1-128 characters is required", {"field": "worker_id"})
    digest = worker_hash(platform=platform, external_id=external_id)
    from judgments import sql

    found = sql.model_rows(Worker, "platform = %s AND external_hash = %s", [platform, digest])
    if found:  # a returning worker: one read (worker_unique_identity: at most one row)
        return found[0]
    try:
        with transaction.atomic():
            return Worker.objects.create(platform=platform, external_hash=digest, is_simulated=is_simulated)
    except IntegrityError:  # a concurrent first visit created it
        return Worker.objects.get(platform=platform, external_hash=digest)


# --- platform context -----------------------------------------------------------------------------------
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"


def mturk_submit_host_ok(submit_to) -> bool:
    """Whether a turkSubmitTo names an MTurk host (settings.MTURK_SUBMIT_HOSTS), path aside. An address
    urllib cannot parse (an unclosed IPv6 bracket) is not one."""
    try:
        return (
            urlparse(str(submit_to or "").rstrip("/"))._replace(path="").geturl()
            in settings.MTURK_SUBMIT_HOSTS
        )
    except ValueError:
        return False


def platform_info_clean(*, platform: str, info: dict) -> dict:
    """Keep the platform fields we need (never the worker id itself) and check them."""
    info = info or {}
    if platform == CrowdPlatform.PROLIFIC:
        keys = ("study_id", "session_id")
    elif platform == CrowdPlatform.MTURK:
        keys = ("hit_id", "assignment_id", "turk_submit_to")
        if not mturk_submit_host_ok(info.get("turk_submit_to")):
            raise ApplicationError(
                "turkSubmitTo is not an MTurk host",
                {"field": "turk_submit_to", "valid": settings.MTURK_SUBMIT_HOSTS},
            )
        if info.get("assignment_id") in (None, "", MTURK_PREVIEW):
            raise ApplicationError("MTurk preview: accept the HIT to start", {"field": "assignment_id"})
    else:
        keys = ()
    clean = {}
    for key in keys:
        value = info.get(key)
        if value is not None:
            if not isinstance(value, str) or len(value) > 256:
                raise ApplicationError(f"{key} must be a string of at most 256 characters", {"field": key})
            clean[key] = value
    if platform == CrowdPlatform.PROLIFIC and not clean.get("session_id"):
        raise ApplicationError("Prolific links carry SESSION_ID", {"field": "session_id"})
    return clean


def platform_session(platform: str, info: dict) -> str | None:
    """The platform's own session of a start: Prolific SESSION_ID, MTurk assignmentId (None: anonymous and
    simulated workers, whose server-issued worker id is itself the secret)."""
    if platform == CrowdPlatform.PROLIFIC:
        return info.get("session_id")
    if platform == CrowdPlatform.MTURK:
        return info.get("assignment_id")
    return None
