"""A round-robin TCP balancer for the load test: one loopback address in front of several gunicorn
instances, as a load balancer (Caddy in docker-compose.yml) is in front of several web machines.

Each accepted connection goes to the next backend in turn and stays there (HTTP keep-alive: a client's
requests all reach one instance, as behind Caddy's round robin); two threads copy bytes each way. It
reads no HTTP, so it adds only socket copies. Run as its own process (`python -m devtools.balancer PORT
BACKEND_PORT...`) so that the load test can count its CPU apart from the load generator's and the web's.
Standard library only: nothing to install.
"""

from __future__ import annotations

import itertools
import socket
import sys
import threading

CHUNK = 65536


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until `source` closes, then pass the close on (half-close, so the other way finishes)."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _serve(client: socket.socket, backend_port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", backend_port))
    except OSError:
        client.close()  # the client sees a dropped connection and retries, as behind a real balancer
        return
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(listen_port: int, backend_ports: list[int], ready: threading.Event | None = None) -> None:
    """Accept on 127.0.0.1:listen_port forever, handing connections to the backends in turn."""
    server = socket.create_server(("127.0.0.1", listen_port), backlog=1024)
    turn = itertools.cycle(backend_ports)
    if ready is not None:
        ready.set()
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, next(turn)), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), [int(port) for port in sys.argv[2:]])
