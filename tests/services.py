"""A real ``docker-registry`` on 127.0.0.1 for tests and benchmarks: private storage, a free port, its
access log readable by the caller, stopped by PID.

No pytest here, so ``benchmarks/registry_bench.py`` starts its registries with the same code
(``from tests.services import start_registry``, run from the checkout's root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

_LOG_RE = re.compile(r'"(GET|HEAD|POST|PATCH|PUT|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


class ServiceError(RuntimeError):
    """A service is not installed or did not start (the message names the Debian package or the log)."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc: subprocess.Popen) -> None:
    """Stop a child by its PID: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class Registry:
    """A running docker-registry: its address, its log, and how to stop it."""

    proc: subprocess.Popen
    port: int
    log: Path
    root: Path

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def mark(self) -> int:
        """The current end of the log (requests after it are those of the next operation)."""
        time.sleep(0.05)  # the access log line is written just after the response
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of every request served since ``since``."""
        time.sleep(0.05)
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in _LOG_RE.finditer(text)]

    def stop(self) -> None:
        """Stop the registry by its PID."""
        stop_pid(self.proc)


def start_registry(root: Path, auth_config: str = "", access_log: bool = True) -> Registry:
    """Start ``docker-registry serve`` on a free 127.0.0.1 port with storage under ``root``.

    ``auth_config`` is YAML appended to the config (an ``auth:`` section); ``access_log=False`` keeps the
    log to errors (a benchmark does not want a line written per request)."""
    exe = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                              if os.path.exists("/usr/bin/docker-registry") else None)
    if not exe:
        raise ServiceError("docker-registry is not installed: apt-get install docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    logging = ("  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n" if access_log
               else "  level: error\n  accesslog:\n    disabled: true\n")
    config.write_text(f"""version: 0.1
log:
{logging}storage:
  filesystem:
    rootdirectory: {root / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: layerkit-test-secret
{auth_config}""")
    log = root / "registry.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    reg = Registry(proc, port, log, root)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"http://{reg.host}/v2/", timeout=1)
            return reg
        except requests.ConnectionError:
            time.sleep(0.05)
    reg.stop()
    raise ServiceError(f"docker-registry did not start in 15 s: {log.read_text()[-2000:]}")
