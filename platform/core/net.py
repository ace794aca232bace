"""Who is the client: the one place that reads a request's address (throttles, per-client caps).

X-Forwarded-For is written by whoever sends the request, so it counts only as far as our own proxies
wrote it: with PERCEPTLAB_TRUSTED_PROXIES = N > 0 the address is the entry N hops from the right (each
trusted proxy appends the address it received the request from); with 0 (the default) it is REMOTE_ADDR
and the header is ignored."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid(value: str) -> str | None:
    value = (value or "").strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the X-Forwarded-For entry our trusted proxies vouch for."""
    remote = _valid(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"
    hops = getattr(settings, "PERCEPTLAB_TRUSTED_PROXIES", 0)
    if hops <= 0:
        return remote
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    if not forwarded:
        return remote  # reached us without passing the proxy (a health check on the internal network)
    return _valid(forwarded[-min(hops, len(forwarded))]) or remote


def client_key(ip: str) -> str:
    """What counts as one client: the IPv4 address, or the IPv6 network of
    settings.PERCEPTLAB_IPV6_CLIENT_PREFIX bits (default /48), written as its first address. A subscriber
    line gets a /64 at least and often a /56 or a whole /48 (tunnel brokers hand out /48s for free), so
    counting anything narrower lets one attacker rotate addresses for nothing; an IPv4-mapped address
    counts as its IPv4 address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = getattr(settings, "PERCEPTLAB_IPV6_CLIENT_PREFIX", 48)
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    return str(address)


def client_address(request) -> str:
    """The client as the abuse limits count it (login lockouts, throttles, open-assignment caps): client_key
    of client_ip. An IP address, as django-axes stores it."""
    return client_key(client_ip(request))
