"""Private service processes on loopback (Redis, Azurite) and the port helpers they need.

Used by the test fixtures and the benchmarks alike; nothing here depends on pytest.
Private instances on free ports keep runs independent of whatever else runs on the
machine, and let fault tests stop and restart them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from core.settings import PROJECT_ROOT

AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class RedisProcess:
    """A redis-server on a fixed free port that a test can stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProcess":
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class AzuriteProcess:
    def __init__(self, location: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.location = location
        self.proc: subprocess.Popen | None = None
        self.binary = PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"
        if not self.binary.exists():
            found = shutil.which("azurite-blob")
            if not found:
                raise RuntimeError("Azurite is not installed: run `npm install` in the project root")
            self.binary = Path(found)

    @property
    def connection_string(self) -> str:
        return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")

    def start(self) -> "AzuriteProcess":
        self.location.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
             str(self.location), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
