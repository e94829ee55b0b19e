"""PostgreSQL and `mlflow server` as a team runs them, for the cluster tests: on loopback, or inside a host of its own
(``run_in``: the command prefix that enters its network namespace)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import free_port, wait_until_up

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path("/usr/lib/postgresql").is_dir() \
    else None
HAVE_POSTGRES = PG_BIN is not None and shutil.which("runuser") is not None


def _as_postgres(*args, run_in: tuple[str, ...] = ()):
    return subprocess.run([*run_in, "runuser", "-u", "postgres", "--", *map(str, args)], check=True,
                          capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def postgres(listen: str = "127.0.0.1", run_in: tuple[str, ...] = ()):
    """A throwaway PostgreSQL on ``listen`` (trust auth), stopped and deleted at the end; yields its URI."""
    # Outside pytest's tmp tree: the server runs as user postgres, which cannot enter root's 0700 folders.
    data = Path(tempfile.mkdtemp(prefix="videoclf-pg-"))
    shutil.chown(data, "postgres", "postgres")
    _as_postgres(PG_BIN / "initdb", "-D", data, "--auth=trust", "-U", "postgres", run_in=run_in)
    port = free_port()
    server = subprocess.Popen([*run_in, "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data),
                               "-p", str(port), "-k", str(data), "-h", listen],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run([*run_in, str(PG_BIN / "pg_isready"), "-h", listen, "-p", str(port)],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline and server.poll() is None, "postgres did not start"
            time.sleep(0.5)
        _as_postgres(PG_BIN / "createdb", "-h", listen, "-p", port, "-U", "postgres", "mlflow", run_in=run_in)
        yield f"postgresql://postgres@{listen}:{port}/mlflow"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, host: str = "127.0.0.1", run_in: tuple[str, ...] = ()):
    """`mlflow server` on ``backend`` with a proxied artifact folder, as a team runs it; yields its URI."""
    port = free_port()
    server = subprocess.Popen(
        [*run_in, sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
         str(artifacts), "--host", host, "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://{host}:{port}"
    try:
        wait_until_up(f"{uri}/health", server)
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
