"""The client address that login throttling (django-axes, settings AXES_*) counts failures against.

REMOTE_ADDR, unless PERCEPTLAB_TRUSTED_PROXIES = N > 0 reverse proxies sit in front of the web process: then
the X-Forwarded-For entry N hops from the right (the address the outermost trusted proxy saw; entries further
left are whatever the client sent). A request with fewer entries than that did not pass every proxy: its
leftmost entry (or REMOTE_ADDR) is used. Anything that is not an IP address falls back to REMOTE_ADDR, so a
forged header can neither break the lockout table (a GenericIPAddressField) nor hide behind garbage.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def trusted_proxies() -> int:
    value = getattr(settings, "PERCEPTLAB_TRUSTED_PROXIES", None)
    if value is None:
        value = getattr(settings, "AXES_IPWARE_PROXY_COUNT", None)
    return max(0, int(value or 0))


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = trusted_proxies()
    if proxies:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            chosen = _ip(hops[-proxies] if len(hops) >= proxies else hops[0])
            if chosen:
                return chosen
    return _ip(remote) or remote
