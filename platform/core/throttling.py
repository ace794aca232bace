"""Throttles for the annotator endpoints: per assignment token (many annotators may share one IP behind a
campus NAT or a crowd platform's proxy), per client IP for starting assignments."""

import hashlib

from rest_framework.throttling import SimpleRateThrottle


class AssignmentThrottle(SimpleRateThrottle):
    scope = "judgments"

    def get_cache_key(self, request, view):
        token = view.kwargs.get("token")
        ident = hashlib.sha256(token.encode()).hexdigest()[:32] if token else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AssignmentStartThrottle(SimpleRateThrottle):
    scope = "assignment_start"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
