"""A real Dask cluster on this machine for the integration tests: a `dask
scheduler` and workers started with `python -m revive.cluster.worker` on
loopback, each with its own cache and work folder (a "host" each), TLS
certificates of their own CA; ``running`` reaps them on every path."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from revive.cluster import certs

from .conftest import DOIT, REPO, executed, processes_mentioning, wait_until


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.project = root / "project"     # the project whose builds go out
        self.address = None
        self.procs: "dict[str, subprocess.Popen]" = {}
        self.names: "dict[str, str]" = {}     # our label -> the worker's Dask name

    def env(self, scheduler: "str | None" = None) -> dict:
        return dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"),
                    REVIVE_SCHEDULER=scheduler or self.address)

    def doit(self, *args, scheduler=None, timeout=600):
        proc = subprocess.run([*DOIT, "-d", str(self.project), *args],
                              env=self.env(scheduler), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        proc.executed = executed(proc.stdout)
        return proc

    def spawn_doit(self, *args):
        return subprocess.Popen([*DOIT, "-d", str(self.project), *args],
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_sigint_default)

    def result(self, name: str) -> dict:
        return json.loads((self.project / "artifacts/builds" / name / "result.json").read_text())

    def start_scheduler(self) -> None:
        info = self.root / "scheduler.json"
        self.procs["scheduler"] = subprocess.Popen(
            [str(Path(sys.executable).with_name("dask")), "scheduler", "--host", "127.0.0.1",
             "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info),
             *certs.scheduler_flags(self.root / "certs")],
            stdout=open(self.root / "scheduler.log", "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not info.exists():
            assert self.procs["scheduler"].poll() is None, (self.root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler wrote no address within 60 s"
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(info.read_text())["address"]

    def start_worker(self, label: str, vms: int = 2, *extra: str, env=None) -> None:
        """A worker as docs/cluster.md starts it (its Dask name is its own
        choice); ``label`` names its cache folder and log here; ``env``, the
        worker's environment (this one's by default)."""
        self.procs[label] = subprocess.Popen(
            [sys.executable, "-m", "revive.cluster.worker", self.address, "--vms", str(vms),
             "--cache", str(self.root / label), "--accel", "tcg",
             "--certs", str(self.root / "certs"), *extra],
            cwd=REPO, stdout=open(self.root / f"{label}.log", "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def label(self, name: str) -> str:
        return next(k for k, v in self.names.items() if v == name)

    def wait_workers(self, labels, timeout=60) -> None:
        from distributed import Client
        with Client(self.address, timeout=30, set_as_default=False,
                    security=certs.security(self.root / "certs", "client", "test")) as client:
            deadline = time.monotonic() + timeout
            while True:
                for n in labels:
                    first = (self.root / f"{n}.log").read_text().partition("\n")[0]
                    if n not in self.names and (m := re.match(r"revive: worker (\S+): ", first)):
                        self.names[n] = m.group(1)
                have = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
                if have == {self.names.get(n) for n in labels}:
                    return
                for n in labels:
                    assert self.procs[n].poll() is None, (self.root / f"{n}.log").read_text()
                assert time.monotonic() < deadline, f"workers {have} registered, wanted {labels}"
                time.sleep(0.2)

    def kill(self, name: str, sig=signal.SIGKILL, group: bool = True) -> None:
        """Signal a process (its whole group unless ``group`` is false: then
        what it started must die of its own accord) and reap it."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n != "scheduler"] + ["scheduler"]:
            if name in self.procs:
                self.kill(name, signal.SIGTERM)


def _sigint_default() -> None:
    # As in a terminal: a test run started in the background inherits
    # SIGINT ignored, and then the Ctrl-C below would never arrive.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ours(root: Path) -> "list[str]":
    """QEMU or Dask processes of this test still running (their command
    lines name its folders)."""
    return processes_mentioning(str(root))


@contextlib.contextmanager
def running(cluster: Cluster):
    """``cluster``, whose scheduler and workers are stopped when the block
    ends, however it ends, and none of whose QEMU or Dask processes outlive it."""
    try:
        yield cluster
    finally:
        cluster.stop_all()
        wait_until(lambda: not ours(cluster.root), 20,
                   "QEMU or Dask processes of the test outlived it")
        assert ours(cluster.root) == []
