"""The cluster across hosts that are really apart (tests/integration/netns.py):
the scheduler, two workers, the submitting host and an sftp store (OpenSSH's
sshd, tests/integration/sshd.py) each in a network namespace of its own with
its own /tmp (seeing only its own folders of the test's), the workers under
one host name. The store is on a second network the scheduler
is not on. Everything talks mutual TLS with the certificates of
`revive cluster certs`. Skipped in one line where namespaces cannot be made."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from revive.cluster import certs
from tests import configs

from . import netns
from .conftest import DOIT, REPO, executed, wait_until, qemu_processes
from .sshd import Sshd, drop_sftp_connections

pytestmark = pytest.mark.integration

WHY_NOT = netns.why_not()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)

BUILDS = {"one": 2, "two": 2, "cut": 20, "restart": 30, "apart1": 2, "apart2": 2, "ctrlc": 100}


def config(scheduler: str, store: str, certs: Path) -> dict:
    return configs.tiny(
        "revive-hosts", vm={"accel": "tcg"},
        cluster={"scheduler": f"tls://{scheduler}:8786", "store": store, "certs": str(certs),
                 "wait_for_worker": "30s"},
        builds={name: configs.build(f"sleep {sleep}; hostname > /mnt/xchg/out.txt; "
                                    "cat /mnt/src/data.txt >> /mnt/xchg/out.txt",
                                    outputs=["out.txt"])
                for name, sleep in BUILDS.items()})
DASK = str(Path(sys.executable).with_name("dask"))


class Hosts:
    def __init__(self, root: Path, net: "netns.Net"):
        self.root, self.net = root, net
        self.procs: "dict[str, subprocess.Popen]" = {}
        self.names: "dict[str, str]" = {}

    def env(self, host: str) -> dict:
        return dict(os.environ, HOME=str(self.root / host / "home"),
                    REVIVE_CACHE=str(REPO / "artifacts" / "cache"))

    def start_scheduler(self) -> None:
        c = self.root / "certs"
        env = dict(self.env("sched"), DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL="10s")
        self.procs["sched"] = self.net.spawn(
            "sched", [DASK, "scheduler", "--host", self.net.addr("sched"), "--port", "8786",
                      "--dashboard-address", "127.0.0.1:0", *certs.scheduler_flags(c)],
            env=env, stdout=open(self.root / "sched.log", "a"), stderr=subprocess.STDOUT)

    def start_worker(self, label: str) -> None:
        log = self.root / f"{label}.log"
        self.procs[label] = self.net.spawn(
            label, [sys.executable, "-m", "revive.cluster.worker",
                    f"tls://{self.net.addr('sched')}:8786", "--certs", str(self.root / "certs"),
                    "--vms", "1", "--cache", str(self.root / label / "cache"), "--accel", "tcg"],
            env=self.env(label), cwd=REPO, stdout=open(log, "a"), stderr=subprocess.STDOUT)

    def workers(self) -> "set[str]":
        """The worker names the scheduler knows, asked from the client host."""
        probe = ("import json, sys; from distributed import Client; "
                 "from revive.cluster import certs; "
                 f"c = Client('tls://{self.net.addr('sched')}:8786', timeout=20, "
                 f"security=certs.security('{self.root / 'certs'}', 'client', 'test')); "
                 "print(json.dumps([w['name'] for w in "
                 "c.scheduler_info(n_workers=-1)['workers'].values()])); c.close()")
        proc = subprocess.run(self.net.argv("client", [sys.executable, "-c", probe]),
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return set(json.loads(proc.stdout.strip().splitlines()[-1]))

    def wait_workers(self, labels, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for label in labels:
                first = (self.root / f"{label}.log").read_text().partition("\n")[0]
                if m := re.match(r"revive: worker (\S+): ", first):
                    self.names[label] = m.group(1)
            if all(label in self.names for label in labels) and \
                    {self.names[n] for n in labels} <= self.workers():
                return
            assert time.monotonic() < deadline, f"workers {labels} did not join"
            time.sleep(1)

    def doit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.net.argv("client", [*DOIT, "-d", str(self.root / "project"),
                                                       *args]),
                              env=self.env("client"), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        proc.executed = executed(proc.stdout)
        return proc

    def spawn_doit(self, *args: str) -> "tuple[subprocess.Popen, list[str]]":
        proc = self.net.spawn("client", [*DOIT, "-d", str(self.root / "project"), *args],
                              env=self.env("client"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        lines: "list[str]" = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        return proc, lines

    def result(self, name: str) -> dict:
        return json.loads((self.root / "project/artifacts/builds" / name / "result.json")
                          .read_text())

    def qemu_on(self, label: str) -> "list[str]":
        return qemu_processes(str(self.root / label))



@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    net = netns.Net(f"rv{os.getpid()}")
    # Not under pytest's temporary folder: its parents are private to us,
    # and sshd runs as another user.
    served = Path(tempfile.mkdtemp(prefix="revive-hosts-sftp-"))
    os.chmod(served, 0o755)
    sshd = None
    try:
        net.host("sched", "sched", {"lan": 1})
        net.host("client", "laptop", {"lan": 2, "san": 2})
        net.host("wa", "buildhost", {"lan": 11, "san": 11})      # one host name, as
        net.host("wb", "buildhost", {"lan": 12, "san": 12})      # cloned machines have
        net.host("store", "store", {"san": 5})
        # Each host's own /tmp holds only what it is given of the test's folder.
        for host, folders in {"sched": ["certs"], "client": ["certs", "project", "client"],
                              "wa": ["certs", "wa"], "wb": ["certs", "wb"]}.items():
            for f in folders:
                (root / f).mkdir(exist_ok=True)
            net.keep(host, *(root / f for f in folders))
        net.keep("store", served)
        sshd = Sshd(served / "sshd", address=net.addr("store", "san"),
                    wrap=lambda argv: net.argv("store", argv)).start()
        url = sshd.serve(served / "store")
        for host in ("client", "wa", "wb"):
            sshd.client_home(root / host / "home")
        certs.make(root / "certs")
        project = root / "project"
        (project / "src").mkdir(parents=True)
        (project / "src" / "data.txt").write_text("from the submitting host\n")
        configs.write(project, config(net.addr("sched"), url, root / "certs"))
        h = Hosts(root, net)
        # The snapshot is taken on this machine as usual; only builds go out.
        snap = subprocess.run([*DOIT, "-d", str(project), "snapshot"],
                              env=dict(h.env("client"), REVIVE_SCHEDULER="local"),
                              capture_output=True, text=True, timeout=900)
        assert snap.returncode == 0, snap.stdout + snap.stderr
        h.start_scheduler()
        h.start_worker("wa")
        h.start_worker("wb")
        h.wait_workers(["wa", "wb"])
        yield h
    finally:
        net.close()
        if sshd is not None:
            sshd.stop()
        drop_sftp_connections()
        shutil.rmtree(served, ignore_errors=True)
    assert net.leftovers() == []
    assert qemu_processes(str(root)) == []


def test_two_workers_with_one_host_name_build_apart(hosts):
    assert hosts.names["wa"] != hosts.names["wb"]
    assert hosts.names["wa"].startswith("buildhost-") and hosts.names["wb"].startswith("buildhost-")
    proc = hosts.doit("-n", "2", "build:one", "build:two")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("one", "two"):
        out = hosts.root / "project/artifacts/builds" / name / "outputs/out.txt"
        assert out.read_text().endswith("from the submitting host\n")
        assert hosts.result(name)["worker"]["host"] == "buildhost"
    assert {hosts.result(n)["worker"]["name"] for n in ("one", "two")} == \
        {hosts.names["wa"], hosts.names["wb"]}


@contextlib.contextmanager
def running(hosts, build: str):
    """doit building ``build`` on the client host, yielded as (process, its
    output lines, the label of the worker it runs on) once its QEMU runs
    there; doit is reaped on every path."""
    doit, lines = hosts.spawn_doit(f"build:{build}")
    try:
        placed = wait_until(lambda: re.findall(r"placed on (\S+) \(", "".join(lines)), 120,
                             "the build was never placed")
        victim = next(k for k, v in hosts.names.items() if v == placed[0])
        wait_until(lambda: hosts.qemu_on(victim), 60, f"no QEMU on {victim}")
        yield doit, lines, victim
    finally:
        if doit.poll() is None:
            os.killpg(doit.pid, signal.SIGKILL)
            doit.wait(timeout=20)


def test_a_worker_cut_off_mid_build_has_it_placed_again(hosts):
    with running(hosts, "cut") as (doit, lines, victim):
        hosts.net.link(victim, "lan", up=False)
        try:
            doit.wait(timeout=300)
        finally:
            hosts.net.link(victim, "lan", up=True)
    other = {"wa": "wb", "wb": "wa"}[victim]
    out = "".join(lines)
    assert doit.returncode == 0, out
    assert f"build cut: placed on {hosts.names[other]} (tls://" in out and "(again)" in out, out
    assert hosts.result("cut")["worker"]["name"] == hosts.names[other]
    # Back on the network, the cut-off worker joins again; its build's QEMU is gone.
    hosts.wait_workers(["wa", "wb"], timeout=120)
    wait_until(lambda: not hosts.qemu_on(victim), 60, "the abandoned build's QEMU still runs")


def test_the_scheduler_restarted_mid_run_is_one_line_and_the_workers_come_back(hosts):
    with running(hosts, "restart") as (doit, lines, victim):
        sched = hosts.procs.pop("sched")
        sched.terminate()
        sched.wait(timeout=30)
        hosts.start_scheduler()
        doit.wait(timeout=120)
    out = "".join(lines)
    assert doit.returncode != 0
    log = hosts.root / "project/artifacts/logs/cluster-client.log"
    assert (f"revive: build restart: the scheduler tls://{hosts.net.addr('sched')}:8786 dropped "
            "it (scheduler-connection-lost: was the scheduler restarted?); run it again "
            f"(Dask's messages: {log})\n" in out), out
    assert "Traceback" not in out, out
    assert log.is_file()
    wait_until(lambda: not hosts.qemu_on(victim), 30, "the lost build's QEMU still runs")
    hosts.wait_workers(["wa", "wb"], timeout=120)


def test_a_store_one_worker_cannot_reach_fails_there_in_one_line(hosts):
    hosts.net.link("wa", "san", up=False)
    try:
        proc = hosts.doit("-n", "2", "build:apart1", "build:apart2")
    finally:
        hosts.net.link("wa", "san", up=True)
    out = proc.stdout + proc.stderr
    failed = [line for line in out.splitlines()
              if line.startswith("revive: build apart") and f"on worker {hosts.names['wa']}:" in line]
    assert len(failed) == 1 and "store" in failed[0] and "sftp://revive-sftp@" in failed[0], out
    assert "Traceback" not in out
    ok = [n for n in ("apart1", "apart2")
          if (hosts.root / "project/artifacts/builds" / n / "result.json").exists()]
    assert len(ok) == 1 and hosts.result(ok[0])["worker"]["name"] == hosts.names["wb"]


def test_ctrl_c_on_the_submitting_host_stops_the_build_on_its_worker(hosts):
    with running(hosts, "ctrlc") as (doit, lines, victim):
        os.killpg(doit.pid, signal.SIGINT)
        doit.wait(timeout=60)
        wait_until(lambda: not hosts.qemu_on(victim), 20,
                    "the cancelled build's QEMU still runs on its worker")
    assert not (hosts.root / "project/artifacts/builds/ctrlc").exists()
