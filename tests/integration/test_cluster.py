"""Builds on a real Dask cluster on this machine: a `dask scheduler` and two
workers started with `python -m revive.cluster.worker` on loopback, each with
its own cache and work folder (two "hosts"), the store a local folder, the
tiny guest under TCG. The fixture starts them and reaps them on every path."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import configs

from .conftest import DOIT, REPO, executed, processes_mentioning, qemu_processes

pytestmark = pytest.mark.integration

def config(store: Path) -> dict:
    def build(name: str, sleep: int, tail: str = "true") -> dict:
        return configs.build(f"sleep {sleep}; echo {name} > /mnt/xchg/out.txt; "
                             f"cat /mnt/src/data.txt >> /mnt/xchg/out.txt; {tail}",
                             outputs=["out.txt"])
    return configs.tiny(
        "revive-cluster", vm={"accel": "tcg"},
        cluster={"scheduler": "tcp://127.0.0.1:9",      # the test sets REVIVE_SCHEDULER
                 "store": f"file://{store}"},
        builds={**{f"b{i}": build(f"b{i}", 4) for i in range(1, 5)},
                "fail": build("fail", 0, "echo broken >&2; exit 3"),
                "slow1": build("slow1", 25), "slow2": build("slow2", 25),
                "cancelme": build("cancelme", 100)})


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.address = None
        self.procs: "dict[str, subprocess.Popen]" = {}

    def env(self, scheduler: "str | None" = None) -> dict:
        return dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"),
                    REVIVE_SCHEDULER=scheduler or self.address)

    def doit(self, *args, scheduler=None, timeout=600):
        proc = subprocess.run([*DOIT, "-d", str(self.root / "project"), *args],
                              env=self.env(scheduler), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        proc.executed = executed(proc.stdout)
        return proc

    def spawn_doit(self, *args):
        return subprocess.Popen([*DOIT, "-d", str(self.root / "project"), *args],
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_sigint_default)

    def result(self, name: str) -> dict:
        return json.loads((self.root / "project/artifacts/builds" / name / "result.json").read_text())

    def start_scheduler(self) -> None:
        info = self.root / "scheduler.json"
        self.procs["scheduler"] = subprocess.Popen(
            [str(Path(sys.executable).with_name("dask")), "scheduler", "--host", "127.0.0.1",
             "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)],
            stdout=open(self.root / "scheduler.log", "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not info.exists():
            assert self.procs["scheduler"].poll() is None, (self.root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler wrote no address within 60 s"
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(info.read_text())["address"]

    def start_worker(self, name: str, vms: int = 2) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "revive.cluster.worker", self.address, "--vms", str(vms),
             "--cache", str(self.root / name), "--accel", "tcg", "--name", name],
            cwd=REPO, stdout=open(self.root / f"{name}.log", "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_workers(self, names, timeout=60) -> None:
        from distributed import Client
        with Client(self.address, timeout=30, set_as_default=False) as client:
            deadline = time.monotonic() + timeout
            while True:
                have = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
                if have == set(names):
                    return
                for n in names:
                    assert self.procs[n].poll() is None, (self.root / f"{n}.log").read_text()
                assert time.monotonic() < deadline, f"workers {have} registered, wanted {names}"
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


def _wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    project = root / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "data.txt").write_text("input from the submitting host\n")
    configs.write(project, config(root / "store"))
    c = Cluster(root)
    try:
        # The snapshot is made on this host, as usual; only builds go out.
        proc = c.doit("snapshot", scheduler="local", timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        c.start_scheduler()
        c.start_worker("wa")
        c.start_worker("wb")
        c.wait_workers(["wa", "wb"])
        yield c
    finally:
        c.stop_all()
        _wait_until(lambda: not _ours(root), 20, "QEMU or Dask processes of the test outlived it")
        assert _ours(root) == []


def _ours(root: Path) -> "list[str]":
    """QEMU or Dask processes of this test still running (their command
    lines name its folders)."""
    return processes_mentioning(str(root))


def test_four_builds_land_on_both_workers_with_the_outputs_of_a_local_build(cluster):
    names = [f"b{i}" for i in range(1, 5)]
    proc = cluster.doit("-n", "4", *[f"build:{n}" for n in names])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("dashboard http://127.0.0.1:") == 1
    for n in names:
        assert f"build {n}: placed on w" in proc.stdout
        result = cluster.result(n)
        assert result["exit_code"] == 0 and result["outputs"] == ["out.txt"]
        out = cluster.root / "project/artifacts/builds" / n / "outputs/out.txt"
        assert out.read_text() == f"{n}\ninput from the submitting host\n"
        assert (cluster.root / "project/artifacts/logs" / f"build-{n}-serial.log").exists()
    assert {cluster.result(n)["worker"]["name"] for n in names} == {"wa", "wb"}
    # Each worker fetched the bundle into its own cache, verified, once.
    for w in ("wa", "wb"):
        objects = [p for p in (cluster.root / w / "objects").iterdir() if not p.name.endswith(".ok")]
        assert len(objects) >= 8
        assert list((cluster.root / w / "work").iterdir()) == []     # work folders removed

    # The same build on this host: same outputs, same kind of result.
    remote = cluster.result("b1")
    remote_out = (cluster.root / "project/artifacts/builds/b1/outputs/out.txt").read_bytes()
    assert cluster.doit("forget", "build:b1").returncode == 0
    local = cluster.doit("build:b1", scheduler="local")
    assert local.returncode == 0, local.stdout + local.stderr
    assert "placed on" not in local.stdout
    here = cluster.result("b1")
    assert (cluster.root / "project/artifacts/builds/b1/outputs/out.txt").read_bytes() == remote_out
    assert "worker" not in here
    assert set(remote) - set(here) == {"worker"}
    assert set(remote["timings"]) - set(here["timings"]) == {"fetch", "publish"}
    assert {k: remote[k] for k in here if k != "timings"} == {k: here[k] for k in here if k != "timings"}


def test_a_failing_build_fails_its_task_in_one_line(cluster):
    proc = cluster.doit("build:fail")
    assert proc.returncode != 0
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if "exited with code" in l]
    assert lines == ["revive: build fail: the command exited with code 3; log: "
                     f"{cluster.root}/project/artifacts/builds/fail/log"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert cluster.result("fail")["exit_code"] == 3
    assert "broken" in (cluster.root / "project/artifacts/builds/fail/log").read_text()


def test_an_unreachable_scheduler_is_one_line(cluster):
    assert cluster.doit("forget", "build:b2").returncode == 0
    proc = cluster.doit("build:b2", scheduler="tcp://127.0.0.1:9")
    assert proc.returncode != 0
    assert ("revive: config.toml: [cluster] scheduler: cannot reach tcp://127.0.0.1:9 within"
            in proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_ctrl_c_cancels_the_build_on_the_cluster(cluster):
    doit = cluster.spawn_doit("build:cancelme")
    try:
        running = _wait_until(lambda: [l for l in qemu_processes(str(cluster.root))
                                       if "cancelme" in l], 120, "the build never started")
        assert running
        os.killpg(doit.pid, signal.SIGINT)
        doit.wait(timeout=60)
        # The worker notices the cancellation and kills the build's QEMU.
        _wait_until(lambda: not [l for l in qemu_processes(str(cluster.root)) if "cancelme" in l],
                    20, "the cancelled build's QEMU still runs on its worker")
    finally:
        if doit.poll() is None:
            os.killpg(doit.pid, signal.SIGKILL)
            doit.wait(timeout=20)
    assert not (cluster.root / "project/artifacts/builds/cancelme").exists()


def test_a_killed_worker_s_build_runs_again_on_the_other(cluster):
    doit = cluster.spawn_doit("-n", "2", "build:slow1", "build:slow2")
    lines: "list[str]" = []
    reader = threading.Thread(target=lambda: lines.extend(doit.stdout), daemon=True)
    reader.start()
    try:
        # The submitting side has seen a placement, and QEMU runs there.
        placed = _wait_until(lambda: re.findall(r"placed on (w[ab]) ", "".join(lines)), 120,
                             "no build was placed")
        victim = placed[0]
        survivor = {"wa": "wb", "wb": "wa"}[victim]
        folder = str(cluster.root / victim)
        _wait_until(lambda: qemu_processes(folder), 60, f"no QEMU started on {victim}")
        # Only the worker process: QEMU must die with it (PDEATHSIG).
        cluster.kill(victim, group=False)
        _wait_until(lambda: not qemu_processes(folder), 10, "QEMU outlived its killed worker")
        doit.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if doit.poll() is None:
            os.killpg(doit.pid, signal.SIGKILL)
            doit.wait(timeout=20)
    out = "".join(lines)
    assert doit.returncode == 0, out + doit.stderr.read()
    assert re.search(rf"build slow\d: placed on {survivor} \(tcp://[0-9.:]+\) \(again\)", out), out
    for n in ("slow1", "slow2"):
        result = cluster.result(n)
        assert result["exit_code"] == 0 and result["worker"]["name"] == survivor


def test_a_snapshot_no_worker_can_revive_is_one_line(cluster):
    for name in [n for n in cluster.procs if n != "scheduler"]:
        cluster.kill(name, signal.SIGTERM)
    assert cluster.doit("forget", "build:b3").returncode == 0
    proc = cluster.doit("build:b3", timeout=120)
    assert proc.returncode != 0
    from revive import qemu
    assert (f"revive: no worker of {cluster.address} can revive this snapshot "
            f"(qemu-{qemu.version()}-tcg-x86_64); workers offer: no workers connected"
            in proc.stdout + proc.stderr)
