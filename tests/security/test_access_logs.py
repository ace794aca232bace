"""Attack: read the web server's logs to recover participants' raw platform ids or their HITs' tokens.
Crowd links open `/s/<study>/?PROLIFIC_PID=...&SESSION_ID=...` (MTurk: `workerId=...`), and every later
request of that page sends the same URL as its Referer; raw ids are never stored. A HIT's token is the
annotator's credential and part of every annotator API path. gunicorn (compose, the load test) and Django's
runserver (`make run`) are started for real here and asked for such URLs; their logs keep the paths only,
each token replaced by a digest of it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from core.logs import GUNICORN_ACCESS_LOG_FORMAT, RedactedRequests, redacted
from devtools.processes import child_process, free_port

ROOT = Path(__file__).resolve().parents[2]
PID, SESSION, WORKER = "5f3c0ffee0000000000badc0de", "SESSIONSECRET42", "AWORKERSECRET7"
STUDY = uuid.uuid4()
CROWD_PATHS = [
    f"/s/{STUDY}/?PROLIFIC_PID={PID}&STUDY_ID=S1&SESSION_ID={SESSION}",
    f"/s/{STUDY}/?assignmentId=A1&hitId=H1&workerId={WORKER}&turkSubmitTo=https%3A%2F%2Fwww.mturk.com",
    f"/livez?PROLIFIC_PID={PID}",
]
TOKEN = "hItT0kenS3cret_ABCDEFGHIJKLMNOPQRS"  # an unknown HIT: a 404 that Django logs too (django.request)
TOKEN_PATHS = [f"/api/v1/assignments/{TOKEN}/", f"/api/v1/assignments/{TOKEN}/judgments/?x={PID}"]
TOKEN_DIGEST = "/api/v1/assignments/~" + hashlib.sha256(TOKEN.encode()).hexdigest()[:8] + "/"


@pytest.fixture(scope="module")
def site_env(tmp_path_factory):
    """A migrated SQLite database the child servers share (the annotator page reads it)."""
    data = tmp_path_factory.mktemp("site")
    env = {
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "PERCEPTLAB_DATA_DIR": str(data),
        "DATABASE_URL": "",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=300,
    )
    return env


def _visit(base: str) -> None:
    for path in CROWD_PATHS + TOKEN_PATHS:
        request = urllib.request.Request(base + path, headers={"Referer": base + CROWD_PATHS[0]})
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=30).read()


def _serve_and_read_log(argv: list[str], env: dict, port: int, log: Path) -> str:
    with child_process(argv, env=env, log_path=log):
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the server did not start:\n" + log.read_text()) from None
                time.sleep(0.3)
        _visit(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            log.read_text().count(f"/s/{STUDY}/") < 2 or f"{TOKEN_DIGEST}judgments/" not in log.read_text()
        ):
            time.sleep(0.2)  # wait for the log lines (not a timing assertion)
    return log.read_text()


def _assert_no_ids(text: str) -> None:
    assert text.count(f"/s/{STUDY}/") >= 2, text  # the requests were logged, by path
    assert TOKEN_DIGEST in text, text  # the annotator API's requests too, by their token's digest
    for secret in (PID, SESSION, WORKER, "PROLIFIC_PID", "workerId", TOKEN):
        assert secret not in text, f"{secret} in the log:\n{text}"


def test_gunicorn_access_log_keeps_no_crowd_ids(site_env, tmp_path):
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--access-logfile",
        "-",
        "--logger-class",
        "core.access_log.GunicornLogger",
        "--access-logformat",
        GUNICORN_ACCESS_LOG_FORMAT,
    ]
    text = _serve_and_read_log(argv, site_env, port, tmp_path / "gunicorn.log")
    _assert_no_ids(text)
    assert f"GET /s/{STUDY}/ HTTP/1.1 404" in text
    assert f"GET {TOKEN_DIGEST} HTTP/1.1 404" in text  # gunicorn's line
    assert f"Not Found: {TOKEN_DIGEST}\n" in text  # Django's (django.request)
    assert f"Method Not Allowed: {TOKEN_DIGEST}judgments/" in text


def test_runserver_request_log_keeps_no_crowd_ids(site_env, tmp_path):
    port = free_port()
    argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]
    text = _serve_and_read_log(argv, site_env, port, tmp_path / "runserver.log")
    _assert_no_ids(text)
    assert f'"GET /s/{STUDY}/ HTTP/1.1" 404' in text


def test_the_filter_strips_query_strings_and_tokens_from_messages_and_arguments():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        (f"GET /s/x/?PROLIFIC_PID={PID} HTTP/1.1", "200", "512"),
        None,
    )
    assert RedactedRequests().filter(record) and record.getMessage() == '"GET /s/x/ HTTP/1.1" 200 512'
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, f"odd /s/x/?workerId={WORKER} seen", None, None
    )
    assert RedactedRequests().filter(record) and record.getMessage() == "odd /s/x/ seen"
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", (TOKEN_PATHS[1],), None
    )
    assert RedactedRequests().filter(record) and record.getMessage() == f"Not Found: {TOKEN_DIGEST}judgments/"
    assert redacted(redacted(TOKEN_PATHS[0])) == TOKEN_DIGEST  # a second pass (logger, then handler) keeps it


def _record(msg, args=(), exc_info=None):
    return logging.LogRecord("x", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_the_filter_redacts_the_text_logging_writes_whatever_the_arguments():
    class Request:  # a request's repr names its path (django.request passes the request along)
        def __repr__(self):
            return f"<WSGIRequest: GET '{TOKEN_PATHS[1]}'>"

    record = _record("odd request %r", (Request(),))
    assert (
        RedactedRequests().filter(record)
        and TOKEN not in record.getMessage()
        and PID not in record.getMessage()
    )
    record = _record("%s?%s", ("/s/x/", f"PROLIFIC_PID={PID}"))  # a query put together by the arguments
    assert RedactedRequests().filter(record) and record.getMessage() == "/s/x/"
    record = _record("is the worker %s done? yes", ("w-1",))  # a question in prose keeps its mark
    assert RedactedRequests().filter(record) and record.getMessage() == "is the worker w-1 done? yes"
    try:
        raise ValueError(f"bad path {TOKEN_PATHS[0]}")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    assert RedactedRequests().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError: bad path" in text and TOKEN not in text and TOKEN_DIGEST in text


def test_gunicorns_error_log_names_no_token():
    """gunicorn logs the raw URI (query included) of a request it failed to handle, on its error log."""
    import io

    from gunicorn.config import Config

    from core.access_log import GunicornLogger

    logger = GunicornLogger(Config())
    out = io.StringIO()
    logger.error_log.addHandler(logging.StreamHandler(out))
    try:
        raise OSError("connection reset")
    except OSError:
        logger.exception("Error handling request %s %s", "GET", TOKEN_PATHS[1])
    assert "Error handling request GET" in out.getvalue() and TOKEN_DIGEST in out.getvalue()
    assert TOKEN not in out.getvalue() and PID not in out.getvalue()


def test_djangos_records_reach_only_filtered_handlers():
    """Django's default logging puts handlers on "django" (a console handler under DEBUG, mail_admins) that
    no filter guards; the settings leave "django" none, so its records reach the root's console handler,
    which redacts."""
    reached = []
    for name in ("django.security.csrf", "django.request", "django.server"):
        logger = logging.getLogger(name)
        while logger is not None:
            reached += [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]
            logger = logger.parent if logger.propagate else None
    assert reached
    for handler in reached:
        assert any(isinstance(f, RedactedRequests) for f in handler.filters), handler
