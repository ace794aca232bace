"""The load test's balancer (one address in front of several web servers) and its report/arguments; the
load itself runs in tests/integration/test_load_short.py and `make loadtest`."""

import http.client
import http.server
import threading

import pytest

from devtools import balancer, loadtest
from devtools.processes import free_port
from tests.apps.devtools.conftest import loadtest_measured


def _server(name: str) -> tuple[int, http.server.ThreadingHTTPServer]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - the stdlib's hook name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            reply = name.encode() + b":" + body
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server


def test_balancer_hands_connections_round_robin_and_keeps_each_on_its_backend():
    (port_a, a), (port_b, b) = _server("a"), _server("b")
    port, ready = free_port(), threading.Event()
    threading.Thread(target=balancer.serve, args=(port, [port_a, port_b], ready), daemon=True).start()
    assert ready.wait(5)
    try:
        seen = []
        for k in range(4):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            replies = []
            for j in range(3):  # keep-alive: every request of one connection reaches the same backend
                body = f"{k}-{j}".encode() * 1000  # larger than one segment: bytes are copied whole
                conn.request("POST", "/", body=body)
                reply = conn.getresponse().read()
                assert reply.split(b":", 1)[1] == body
                replies.append(reply[:1])
            conn.close()
            assert len(set(replies)) == 1
            seen.append(replies[0])
        assert seen == [b"a", b"b", b"a", b"b"]
    finally:
        a.shutdown()
        b.shutdown()


def test_a_dead_backend_drops_the_connection_instead_of_hanging():
    port_a, a = _server("a")
    dead = free_port()  # nothing listens here
    port, ready = free_port(), threading.Event()
    threading.Thread(target=balancer.serve, args=(port, [dead, port_a], ready), daemon=True).start()
    assert ready.wait(5)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("POST", "/", body=b"x")
            conn.getresponse().read()
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # the next connection goes to a
        conn.request("POST", "/", body=b"y")
        assert conn.getresponse().read() == b"a:y"
        conn.close()
    finally:
        a.shutdown()


@pytest.mark.django_db
def test_existing_study_must_be_an_active_2afc_simulation_study():
    from studies.models import Study
    from studies.services import study_create

    study = loadtest.loadtest_study(n_items=5, hit_size=2)
    assert loadtest.existing_study(str(study.pk)).pk == study.pk
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(ValueError, match="no study"):
            loadtest.existing_study(bad)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.PAUSED)
    with pytest.raises(ValueError, match="active 2AFC"):
        loadtest.existing_study(str(study.pk))
    real = study_create(name="real", kind="2afc", build_config={}, config={})
    Study.objects.filter(pk=real.pk).update(status=Study.Status.ACTIVE)
    with pytest.raises(ValueError, match="simulated workers"):
        loadtest.existing_study(str(real.pk))


def _measured(n: int, per_s: float) -> dict:
    run = {
        "judgments_per_s": per_s,
        "latency_ms": {"submit": {"p50": 1, "p95": 2, "p99": 3}},  # no start sent in the window
        "cpu_ms": {"web": 2.0, "postgres": 1.0, "load generator": 0.5} | ({"balancer": 0.3} if n > 1 else {}),
        "hits": 10,
        "errors": [],
    }
    return loadtest_measured({"back to back": run}, web_instances=n)


def test_reports_name_the_command_and_say_what_limits_the_sum():
    text = loadtest.instances_report({1: _measured(1, 300.0), 2: _measured(2, 450.0)})
    assert "--web-instances 2" in text and "--run back-to-back" in text
    assert "2 instances stored 1.50x the judgments/s of one" in text
    assert "| 2 | 2 | 450 | 1000 | 2.0 / 1.0 / 0.3 / 0.5 ms | 0 | 0 / 0 |" in text
    single = loadtest.report(_measured(1, 300.0))
    assert "none sent in the window" in single  # a short run without a start still reports
    assert "Target" not in single  # no paced run, no verdict on the paced target


@pytest.mark.parametrize("web, verdict", [(1.5, "met"), (2.1, "NOT met")])
def test_the_paced_target_counts_the_web_cpu_and_scales_it_to_the_slower_machine(web, verdict):
    measured = _measured(1, 300.0)
    paced = {
        **measured["runs"]["back to back"],
        "latency_ms": {op: {"p50": 9, "p95": 20, "p99": 50} for op in ("submit", "next_batch")},
        "cpu_ms": {"web": web, "postgres": 1.0, "load generator": 0.3},
    }
    measured["runs"] = {"paced (300/s offered)": paced}
    measured["checks"] = {"paced (300/s offered)": measured["checks"]["back to back"]}
    measured["bare"]["requests_per_s"] = 2592.0  # 1.25x the reference machine's /livez rate
    text = loadtest.report(measured)
    assert f"web CPU per judgment at most 2 ms; paced run): **{verdict}**" in text
    assert f"(bare `/livez` 2,073 requests/s, here 2,592): {web * 2592 / 2073:.2f} ms" in text
    assert f"| {web:.2f} / 1.00 / 0.30 ms |" in text


@pytest.mark.django_db
def test_the_study_report_sets_a_large_study_beside_a_fresh_one(make_study):
    study = make_study(n_test=6, config={"simulation": True})
    fresh, given = _measured(1, 300.0), _measured(1, 290.0)
    for m, start_p99, submit_p99 in ((fresh, 40.0, 20.0), (given, 80.0, 25.0)):
        m["runs"]["back to back"]["latency_ms"] = {
            "next_batch": {"p50": 1, "p95": 2, "p99": start_p99},
            "submit": {"p50": 1, "p95": 2, "p99": submit_p99},
        }
    given["params"] = {**given["params"], "study": {"id": str(study.pk), "items": 6}}
    text = loadtest.study_report([(fresh, given)])
    assert f"--study-id {study.pk}" in text
    assert "| judgments/s (acknowledged) | 300 | 290 |" in text
    # start: 80 / 40 = 2.00x, over the 1.5x target; answer: 25 / 20 = 1.25x, within it
    assert "start (next batch) p99 2.00x the fresh study's (NOT met)" in text
    assert "answer (submit) p99 1.25x the fresh study's (met)" in text
    assert "round" not in text  # one round: no per-round lines, no median

    # three rounds: each round's ratio is shown, and the verdict is on the median (1.2x start, 2.0x answer)
    def pair(start_ratio, answer_ratio):
        f, g = _measured(1, 300.0), _measured(1, 300.0)
        for m, start_p99, submit_p99 in ((f, 40.0, 20.0), (g, 40.0 * start_ratio, 20.0 * answer_ratio)):
            m["runs"]["back to back"]["latency_ms"] = {
                "next_batch": {"p50": 1, "p95": 2, "p99": start_p99},
                "submit": {"p50": 1, "p95": 2, "p99": submit_p99},
            }
        g["params"] = {**given["params"], "rounds": 3}
        return f, g

    text = loadtest.study_report([pair(1.2, 2.0), pair(3.0, 0.5), pair(1.0, 2.5)])
    assert "`--rounds 3`" in text and "### back to back, round 3" in text
    assert f"--study-id {study.pk} --rounds 3" in text  # the command line reproduces the run
    assert "Round 2: start (next batch) p99 3.00x the fresh study's; answer (submit) p99 0.50x" in text
    assert "start (next batch) p99 1.20x the fresh study's (median of 3 rounds) (met)" in text
    assert "answer (submit) p99 2.00x the fresh study's (median of 3 rounds) (NOT met)" in text


def test_the_servers_report_alternates_servers_and_gives_each_servers_mean():
    def paced(server: str, web_ms: float) -> dict:
        m = _measured(1, 300.0)
        run = {**m["runs"]["back to back"], "cpu_ms": {"web": web_ms, "postgres": 0.9, "load generator": 0.4}}
        run["latency_ms"] = {
            "submit": {"p50": 4, "p95": 10, "p99": 17},
            "next_batch": {"p50": 13, "p95": 23, "p99": 30},
        }
        m["runs"], m["checks"] = {"paced (300/s offered)": run}, {"paced (300/s offered)": m["checks"]}
        m["params"] = {**m["params"], "runs": ("paced",), "server": server}
        return m

    rounds = [
        {"gunicorn": paced("gunicorn", 2.2), "granian": paced("granian", 1.8)},
        {"gunicorn": paced("gunicorn", 2.4), "granian": paced("granian", 2.0)},
    ]
    text = loadtest.servers_report(rounds)
    assert "--compare-servers 2" in text and "--run paced" in text
    assert "| 1 | gunicorn | 300 | 17 / 30 ms | 2.20 / 0.90 / 0.40 ms | 1000 | 0 |" in text
    assert "| 2 | granian | 300 | 17 / 30 ms | 2.00 / 0.90 / 0.40 ms | 1000 | 0 |" in text
    assert "gunicorn 2.30 ms (range 2.20-2.40); granian 1.90 ms (range 1.80-2.00)" in text
    assert "differed by up to 0.20 ms" in text  # the spread measured, not a fixed figure


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--compare-servers", "2", "--study-id", "x"], "--compare-servers makes paced runs"),
        (["--compare-servers", "2", "--web-instances", "2"], "--compare-servers makes paced runs"),
        (["--compare-servers", "2", "--run", "back-to-back"], "--compare-servers makes paced runs"),
        (["--compare-servers", "2", "--server", "granian"], "--compare-servers makes paced runs"),
        (["--compare-servers", "-1"], "--compare-servers must be at least 1"),
        (["--rounds", "3"], "--rounds repeats the --study-id comparison"),
        (["--rounds", "0", "--study-id", "x"], "--rounds must be at least 1"),
    ],
)
def test_the_command_refuses_options_it_would_ignore(argv, message):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=message):
        call_command("loadtest", *argv)


def test_a_run_names_its_server_and_an_unknown_server_is_refused(tmp_path):
    m = _measured(1, 300.0)
    m["params"] = {**m["params"], "server": "granian"}
    text = loadtest.report(m)
    assert "against granian + postgresql" in text and "--server granian" in text
    assert "--server" not in loadtest.report(_measured(1, 300.0))  # gunicorn is the default
    with pytest.raises(ValueError, match="unknown web server 'uwsgi'"):
        with loadtest.web_servers({}, server="uwsgi", log_dir=tmp_path):
            pass
