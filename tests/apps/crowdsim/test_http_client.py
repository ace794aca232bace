"""The simulated crowd's HTTP client: a kept-alive connection the server closed while idle is replaced at
once, as a browser does, not retried after a backoff."""

import http.server
import threading
import time

from crowdsim.simulation import HttpClient


class _CloseAfterEach(http.server.BaseHTTPRequestHandler):
    """Answers as HTTP/1.1 keep-alive, then drops the connection anyway (a keep-alive timeout)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_a_connection_closed_while_idle_is_replaced_at_once():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CloseAfterEach)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HttpClient(f"http://127.0.0.1:{server.server_port}")
        assert client.request("POST", "/x", {"n": 1}) == (200, {"ok": True})
        time.sleep(0.1)  # the server has closed it by now
        t = time.perf_counter()
        for n in range(3):
            assert client.request("POST", "/x", {"n": n}) == (200, {"ok": True})
        assert client.retries == 0 and time.perf_counter() - t < 0.2  # no backoff sleep (0.2 s each)
        client.close()
    finally:
        server.shutdown()
