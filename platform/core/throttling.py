"""Throttles for the annotator endpoints: per assignment token (many annotators may share one IP behind a
campus NAT or a crowd platform's proxy), per client IP for starting assignments.

Counts live in the cache: Redis where CACHE_URL is set, shared by every web process. There a throttle
costs one round trip, a sliding-window counter kept by a Lua script (the share of the previous window
still inside the last `duration` seconds, rounded up, plus the current window's count); with any other
cache, DRF's own timestamp-list throttle. A throttle guards the server; it must never cost an annotator
an answer, so while the cache cannot be reached requests are let through and the outage is logged (at
most once a minute)."""

import hashlib
import logging
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from core.net import client_address

logger = logging.getLogger(__name__)
_last_warning = [0.0]

# KEYS: this window's counter, the previous window's; ARGV: limit, weight of the previous window, ttl, the
# request's cost (1, or a batch's answers). Allowed requests are counted (refused ones are not, as in DRF).
# Returns {allowed, current, previous}.
_SLIDING_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local cost = tonumber(ARGV[4])
if math.ceil(previous * tonumber(ARGV[2])) + current + cost > tonumber(ARGV[1]) then
  return {0, current, previous}
end
redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, current + cost, previous}
"""


def _redis_script():
    """(cache backend, registered script) when the default cache is Redis, kept on the backend object
    (one per thread, as Django makes them); None otherwise."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    script = getattr(backend, "_throttle_script", None)
    if script is None:
        script = backend._throttle_script = backend._cache.get_client(write=True).register_script(
            _SLIDING_WINDOW
        )
    return backend, script


class _SharedThrottle(SimpleRateThrottle):
    """A view's `throttle_weight` (set before the throttles run; 1 when absent) is what one request costs:
    the answer batch endpoint counts its answers (at most the whole rate)."""

    def allow_request(self, request, view):
        cost = getattr(view, "throttle_weight", 1)
        try:
            redis = _redis_script()
            if self.rate is None:
                return True
            cost = min(cost, self.num_requests)  # a batch larger than the rate fits an empty window
            if redis is None:
                return self._allow_local(request, view, cost)
            key = self.get_cache_key(request, view)
            if key is None:
                return True
            return self._allow_sliding(redis, key, cost)
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - _last_warning[0] > 60:
                _last_warning[0] = now
                logger.warning("throttle cache unreachable, requests are not throttled: %r", exc)
            return True

    def _allow_local(self, request, view, cost: int) -> bool:
        """DRF's timestamp-list throttle (any cache but Redis); a request of `cost` counts that many."""
        if cost == 1:
            return super().allow_request(request, view)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        excess = len(self.history) + cost - self.num_requests
        if excess > 0:  # the oldest `excess` requests must leave the window first (history: newest first)
            self._retry_after = max(0.0, self.history[-excess] + self.duration - self.now) + 1e-3
            return self.throttle_failure()
        self.history[:0] = [self.now] * cost
        self.cache.set(self.key, self.history, self.duration)
        return True

    def _allow_sliding(self, redis, key: str, cost: int = 1) -> bool:
        backend, script = redis
        now = self.timer()
        window, into = divmod(now, self.duration)
        keys = [backend.make_and_validate_key(f"{key}:{int(window) - k}") for k in (0, 1)]
        allowed, current, previous = script(
            keys=keys, args=[self.num_requests, 1 - into / self.duration, 2 * self.duration + 1, cost]
        )
        if not allowed:
            self._retry_after = self._sliding_wait(into, int(current), int(previous), cost)
        return bool(allowed)

    def _sliding_wait(self, into: float, current: int, previous: int, cost: int = 1) -> float:
        """Seconds until a request of `cost` fits: while the previous window's share decays, or (when this
        window alone is too full) into the next window, as this window's count decays in turn."""
        d, n = self.duration, self.num_requests
        if current + cost <= n:  # the previous window's share must fall to n - current - cost (or lower)
            need = 1 - (n - current - cost) / previous if previous else 0.0
            return max(0.0, need * d - into) + 1e-3
        return (d - into) + max(0.0, 1 - (n - cost) / current) * d + 1e-3

    def get_ident(self, request):
        """The client as core.net counts it (X-Forwarded-For only from trusted proxies; an IPv6 /48 is one
        client), not DRF's get_ident, which believes any client's X-Forwarded-For."""
        return client_address(request)

    def wait(self):
        if hasattr(self, "_retry_after"):
            return self._retry_after
        return super().wait()


class AssignmentThrottle(_SharedThrottle):
    scope = "judgments"

    def get_cache_key(self, request, view):
        token = view.kwargs.get("token")
        ident = hashlib.sha256(token.encode()).hexdigest()[:32] if token else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AssignmentImageThrottle(AssignmentThrottle):
    """Stimulus images, per assignment token: a page prefetches a few trials of two or three images each."""

    scope = "assignment_images"
    DEFAULT_RATE = "1200/min"

    def get_rate(self):
        return self.THROTTLE_RATES.get(self.scope) or self.DEFAULT_RATE


class AssignmentStartThrottle(_SharedThrottle):
    scope = "assignment_start"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
