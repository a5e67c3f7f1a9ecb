"""Builds on a real Dask cluster on this machine: a `dask scheduler` and two
workers started with `python -m revive.cluster.worker` on loopback, each with
its own cache and work folder (two "hosts"), the store a local folder, the
tiny guest under TCG. The fixture starts them and reaps them on every path."""

import contextlib
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from revive.cluster import certs
from tests import configs

from .cluster import Cluster, running
from .conftest import wait_until, qemu_processes

pytestmark = pytest.mark.integration

def config(store: Path, certs: Path) -> dict:
    def build(name: str, sleep: int, tail: str = "true") -> dict:
        return configs.build(f"sleep {sleep}; echo {name} > /mnt/xchg/out.txt; "
                             f"cat /mnt/src/data.txt >> /mnt/xchg/out.txt; {tail}",
                             outputs=["out.txt"])
    return configs.tiny(
        "revive-cluster", vm={"accel": "tcg"},
        cluster={"scheduler": "tls://127.0.0.1:9",      # the test sets REVIVE_SCHEDULER
                 "store": f"file://{store}", "certs": str(certs), "wait_for_worker": "20s"},
        builds={**{f"b{i}": build(f"b{i}", 4) for i in range(1, 5)},
                "fail": build("fail", 0, "echo broken >&2; exit 3"),
                "slow1": build("slow1", 25), "slow2": build("slow2", 25),
                "cancelme": build("cancelme", 100)})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    project = root / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "data.txt").write_text("input from the submitting host\n")
    configs.write(project, config(root / "store", root / "certs"))
    certs.make(root / "certs")
    with running(Cluster(root)) as c:
        # The snapshot is made on this host, as usual; only builds go out.
        proc = c.doit("snapshot", scheduler="local", timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        c.start_scheduler()
        c.start_worker("wa")
        c.start_worker("wb")
        c.wait_workers(["wa", "wb"])
        yield c


def test_four_builds_land_on_both_workers_with_the_outputs_of_a_local_build(cluster):
    names = [f"b{i}" for i in range(1, 5)]
    proc = cluster.doit("-n", "4", *[f"build:{n}" for n in names])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("dashboard http://127.0.0.1:") == 1
    for n in names:
        assert f"build {n}: placed on {socket.gethostname()}-" in proc.stdout
        result = cluster.result(n)
        assert result["exit_code"] == 0 and result["outputs"] == ["out.txt"]
        out = cluster.root / "project/artifacts/builds" / n / "outputs/out.txt"
        assert out.read_text() == f"{n}\ninput from the submitting host\n"
        assert (cluster.root / "project/artifacts/logs" / f"build-{n}-serial.log").exists()
    # Two workers on one host, started alike: names of their own.
    assert {cluster.result(n)["worker"]["name"] for n in names} == set(cluster.names.values())
    assert len(set(cluster.names.values())) == 2
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
    proc = cluster.doit("build:b2", scheduler="tls://127.0.0.1:9")
    assert proc.returncode != 0
    assert ("revive: config.toml: [cluster] scheduler: cannot reach tls://127.0.0.1:9 within"
            in proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_worker_name_taken_anyway_is_one_line(cluster):
    taken = cluster.names["wa"]
    cluster.start_worker("wc", 1, "--name", taken)
    try:
        cluster.procs["wc"].wait(timeout=60)
    finally:
        cluster.kill("wc")
    lines = (cluster.root / "wc.log").read_text().splitlines()
    assert lines[1:] == [f"revive: worker {taken}: the scheduler {cluster.address} already has "
                         "a worker of that name; choose another --name or leave it out (the "
                         "default is unique)"], lines


def test_ctrl_c_cancels_the_build_on_the_cluster(cluster):
    doit = cluster.spawn_doit("build:cancelme")
    try:
        running = wait_until(lambda: [l for l in qemu_processes(str(cluster.root))
                                       if "cancelme" in l], 120, "the build never started")
        assert running
        os.killpg(doit.pid, signal.SIGINT)
        doit.wait(timeout=60)
        # The worker notices the cancellation and kills the build's QEMU.
        wait_until(lambda: not [l for l in qemu_processes(str(cluster.root)) if "cancelme" in l],
                    20, "the cancelled build's QEMU still runs on its worker")
    finally:
        if doit.poll() is None:
            os.killpg(doit.pid, signal.SIGKILL)
            doit.wait(timeout=20)
    assert not (cluster.root / "project/artifacts/builds/cancelme").exists()


@contextlib.contextmanager
def doit_reading(cluster, *args: str):
    """doit on the cluster's project, its output lines gathered as they come;
    it must end within 5 minutes of the block, and is killed if it did not."""
    doit = cluster.spawn_doit(*args)
    lines: "list[str]" = []
    reader = threading.Thread(target=lambda: lines.extend(doit.stdout), daemon=True)
    reader.start()
    try:
        yield doit, lines
        doit.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if doit.poll() is None:
            os.killpg(doit.pid, signal.SIGKILL)
            doit.wait(timeout=20)


def test_a_killed_worker_s_build_runs_again_on_the_other(cluster):
    with doit_reading(cluster, "-n", "2", "build:slow1", "build:slow2") as (doit, lines):
        # The submitting side has seen a placement, and QEMU runs there.
        placed = wait_until(lambda: re.findall(r"placed on (\S+) \(", "".join(lines)), 120,
                             "no build was placed")
        victim = cluster.label(placed[0])
        survivor = cluster.names[{"wa": "wb", "wb": "wa"}[victim]]
        folder = str(cluster.root / victim)
        wait_until(lambda: qemu_processes(folder), 60, f"no QEMU started on {victim}")
        # Only the worker process: QEMU must die with it (PDEATHSIG).
        cluster.kill(victim, group=False)
        wait_until(lambda: not qemu_processes(folder), 10, "QEMU outlived its killed worker")
    out = "".join(lines)
    assert doit.returncode == 0, out + doit.stderr.read()
    assert re.search(rf"build slow\d: placed on {survivor} \(tls://[0-9.:]+\) \(again\)", out), out
    for n in ("slow1", "slow2"):
        result = cluster.result(n)
        assert result["exit_code"] == 0 and result["worker"]["name"] == survivor


def test_a_build_whose_only_worker_died_says_so_and_waits_for_another(cluster):
    left = [n for n in cluster.procs if n != "scheduler"]
    for label in left[1:]:
        cluster.kill(label, signal.SIGTERM)
    only = left[0]
    assert cluster.doit("forget", "build:slow1").returncode == 0
    from revive import qemu
    wanted = f"qemu-{qemu.version()}-tcg-x86_64, vm"
    with doit_reading(cluster, "build:slow1") as (doit, lines):
        wait_until(lambda: "placed on" in "".join(lines), 120, "the build was never placed")
        wait_until(lambda: qemu_processes(str(cluster.root / only)), 60, "no QEMU started")
        cluster.kill(only, group=False)
        t0 = time.monotonic()
        gone = wait_until(lambda: re.findall(r".*is gone; waiting up to.*", "".join(lines)),
                           15, "15 s after its worker died the build said nothing")
        assert gone[0].startswith(f"revive: build slow1: its worker {cluster.names[only]} "
                                  "(tls://"), gone
        assert gone[0].endswith(f"waiting up to 20 s ([cluster] wait_for_worker) for a worker "
                                f"offering {wanted}; workers offer: no workers connected"), gone
        assert time.monotonic() - t0 < 15
        cluster.start_worker("wd", 1)
        cluster.wait_workers(["wd"])
    out = "".join(lines)
    assert doit.returncode == 0, out + doit.stderr.read()
    assert f"build slow1: placed on {cluster.names['wd']} (tls://" in out and "(again)" in out, out
    assert cluster.result("slow1")["worker"]["name"] == cluster.names["wd"]

    # No worker at all, for longer than [cluster] wait_for_worker: one line.
    cluster.kill("wd", signal.SIGTERM)
    assert cluster.doit("forget", "build:b3").returncode == 0
    t0 = time.monotonic()
    proc = cluster.doit("build:b3", timeout=120)
    assert proc.returncode != 0
    assert 20 <= time.monotonic() - t0 < 60
    assert (f"revive: build b3: no worker of {cluster.address} offered {wanted} within 20 s "
            "([cluster] wait_for_worker); workers offer: no workers connected. Start one"
            in proc.stdout + proc.stderr), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
