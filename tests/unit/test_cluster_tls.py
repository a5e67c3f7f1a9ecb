"""Mutual TLS between real Dask processes (no QEMU): a `dask scheduler`
started with the certificates of `revive cluster certs`, a revive worker
with its own; a client or a worker with another cluster's certificates,
or none, gets nothing done."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revive.cluster import certs
from revive.core.errors import UserError

DASK = str(Path(sys.executable).with_name("dask"))


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def tls_scheduler(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    certs.make(root / "ours")
    certs.make(root / "theirs")
    info = root / "scheduler.json"
    proc = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
         "127.0.0.1:0", "--scheduler-file", str(info), *certs.scheduler_flags(root / "ours")],
        stdout=open(root / "scheduler.log", "w"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            assert proc.poll() is None, (root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler wrote no address within 60 s"
            time.sleep(0.1)
        time.sleep(0.2)
        yield root, json.loads(info.read_text())["address"]
    finally:
        _reap(proc)


def _worker(root: Path, address: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "revive.cluster.worker", address, "--cache", str(root / "cache"),
         "--accel", "tcg", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True)


def _client(address: str, folder: Path, timeout: float = 5):
    from distributed import Client
    return Client(address, timeout=timeout, set_as_default=False,
                  security=certs.security(folder, "client", "test"))


def test_the_cluster_s_own_certificates_run_a_task(tls_scheduler):
    root, address = tls_scheduler
    assert address.startswith("tls://127.0.0.1:")
    worker = _worker(root, address, "--certs", str(root / "ours"), "--host", "127.0.0.1")
    try:
        with _client(address, root / "ours", timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            (where, info), = client.scheduler_info(n_workers=-1)["workers"].items()
            assert info["name"].startswith(socket.gethostname() + "-")
            assert where.startswith("tls://127.0.0.1:")      # listening only where told
            assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
    finally:
        _reap(worker)


def test_a_client_without_the_cluster_s_certificate_cannot_submit(tls_scheduler):
    root, address = tls_scheduler
    from distributed import Client
    with pytest.raises((OSError, TimeoutError)):
        _client(address, root / "theirs")           # another CA's certificate
    with pytest.raises((OSError, TimeoutError)):
        Client(address.replace("tls://", "tcp://"), timeout=5, set_as_default=False)


def test_a_worker_without_the_cluster_s_certificate_cannot_join(tls_scheduler):
    root, address = tls_scheduler
    worker = _worker(root, address, "--certs", str(root / "theirs"))
    try:
        with _client(address, root / "ours", timeout=30) as client:
            time.sleep(8)
            assert client.scheduler_info(n_workers=-1)["workers"] == {}
    finally:
        _reap(worker)


def test_a_worker_refuses_plain_tcp_unless_told(tmp_path):
    proc = _worker(tmp_path, "tcp://127.0.0.1:9")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out.splitlines() == [
        "revive: tcp://127.0.0.1:9: a worker runs whatever the scheduler's clients submit; "
        "give it --certs DIR (revive cluster certs) and a tls:// scheduler, or --insecure on "
        "a network you trust"]


def test_missing_certificates_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^\[cluster\] certs: .*/ca.pem does not exist; make"):
        certs.security(tmp_path, "client", "[cluster] certs")
    certs.make(tmp_path / "c")
    with pytest.raises(UserError, match="already exist"):
        certs.make(tmp_path / "c")
    assert oct((tmp_path / "c/client.pem").stat().st_mode & 0o777) == "0o600"
