"""gunicorn's access log without HIT tokens (`--logger-class core.access_log.GunicornLogger`; core.logs)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from core.logs import redacted


class GunicornLogger(Logger):
    """gunicorn's logger whose access-log atoms carry the path and request line redacted (core.logs.redacted):
    an annotator API path names the HIT's token."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("U", "r"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redacted(atoms[key])
        return atoms
