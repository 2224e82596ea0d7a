"""A real redis-server for tests: loopback only, a free port, its own folder, stopped afterwards.

Use ``running_redis(folder)`` in a fixture, or ``RedisServer`` directly.
The server keeps an append-only file in its folder, so ``restart()`` (same port, same folder)
brings the data back, as a production Redis with persistence would.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class RedisServer:
    """``password`` starts it with ``--requirepass`` (``url`` still carries none; pass it separately)."""

    def __init__(self, folder: Path, port: int | None = None, password: str | None = None):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (run scripts/install-system-deps.sh)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes",
             "--logfile", str(self.folder / "redis.log"),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{(self.folder / 'redis.log').read_text()[-500:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2) as s:
                    auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                    s.sendall(auth + b"PING\r\n")
                    reply = b""
                    while b"PONG" not in reply and b"-" not in reply:
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        reply += chunk
                    if b"+PONG" in reply:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {HOST}:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_s`` seconds, start it again on the same port and folder."""
        self.stop()
        time.sleep(down_s)
        self.start()


@contextlib.contextmanager
def running_redis(folder: Path, password: str | None = None) -> Iterator[RedisServer]:
    """A started server in ``folder``, stopped on exit; skips the test when redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it via scripts/install-system-deps.sh)")
    server = RedisServer(folder, password=password).start()
    try:
        yield server
    finally:
        server.stop()
