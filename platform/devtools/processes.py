"""Child processes for the load test and the integration tests (gunicorn, celery), and what /proc says
about running processes (parents, names, CPU time). Linux only, like the machines those run on."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def child_process(argv: list[str], *, env: dict, log_path: Path | None = None, stop_timeout: float = 20.0):
    """Run argv from the repository root with platform/ on the path and `env` over this environment,
    output to log_path (or nowhere); on exit SIGTERM it, and SIGKILL it after stop_timeout."""
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", **env}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, name) of every process now running."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                head, tail = (entry / "stat").read_text().rsplit(")", 1)
                out.append((int(entry.name), int(tail.split()[1]), head.split("(", 1)[1]))
    return out


def children(pid: int) -> list[int]:
    return [child for child, parent, _ in processes() if parent == pid]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process and of its children that exited, so that a PostgreSQL
    backend or a gunicorn worker that ends mid-run still counts."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
