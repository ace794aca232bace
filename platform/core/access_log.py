"""gunicorn's logs without HIT tokens or query strings (`--logger-class core.access_log.GunicornLogger`;
core.logs)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from core.logs import RedactedRequests, redacted


class GunicornLogger(Logger):
    """gunicorn's logger whose access-log atoms carry the path and request line redacted (core.logs.redacted:
    an annotator API path names the HIT's token), and whose error log passes RedactedRequests (gunicorn logs
    the raw URI of a request it failed to handle)."""

    def setup(self, cfg):
        super().setup(cfg)
        if not any(isinstance(f, RedactedRequests) for f in self.error_log.filters):
            self.error_log.addFilter(RedactedRequests())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("U", "r"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redacted(atoms[key])
        return atoms
