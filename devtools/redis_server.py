"""A private redis-server on loopback: for `make run`, the test suite and benches."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start(
    binary: str, port: int, directory: Path, timeout: float = 15, durable: bool = False
) -> subprocess.Popen[bytes]:
    """Start redis-server (log in `directory`) and wait for it to answer.

    Nothing is saved to disk unless `durable`: then an append-only file in `directory` (fsync
    once a second, as a production broker keeps it) lets a restart on the same directory find
    the queued messages and leases again. Stop it with SIGTERM, which writes the file out.

    It runs in its own session, so a terminal's Ctrl-C does not reach it: its owner stops it.
    Raises RuntimeError, naming the log, when it exits or does not answer in time.
    """
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "redis.log"
    appendonly = ["yes", "--appendfsync", "everysec"] if durable else ["no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", *appendonly, "--logfile", str(log)],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(port):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {process.returncode}; see {log}")
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(
        f"redis-server did not answer on port {port} within {timeout:.0f} s; see {log}"
    )
