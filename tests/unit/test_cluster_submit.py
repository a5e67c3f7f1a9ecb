"""The submitting side against a real in-process Dask scheduler and worker
(no QEMU): an unplaceable snapshot and an unreachable scheduler are one
line; the submitted task reaches a scheduler without revive on its path."""

import os
import pickle
import socket
import subprocess
import sys
import time

import pytest

from revive.cluster import resources as res
from revive.cluster import submit, thunk
from revive.core.errors import UserError


@pytest.fixture
def local_cluster():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None,
                      resources={"vm": 1, "qemu-7.2.22-tcg-x86_64": 1}) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield cluster, client


def _waiting(cluster, monkeypatch, look: float, accelerator: str):
    """A build ``b`` that needs a snapshot of ``accelerator``, the cluster's
    config with a 3 s wait_for_worker, and what the build needs; the
    submitter looks at the scheduler every ``look`` s."""
    from revive.config import Cluster
    from revive.machine.job import BuildRequest
    monkeypatch.setattr(submit, "LOOK", look)
    needs = res.for_snapshot({"qemu": "7.2.22", "accelerator": accelerator})
    build = BuildRequest(name="b", command="true", env={}, outputs=(), timeout=60,
                         shares={}, revive_timeout=60)
    config = Cluster(scheduler=cluster.scheduler_address, store="file:///x", wait_for_worker=3)
    return build, config, needs


def test_a_build_no_worker_can_take_says_so_then_fails_in_one_line(local_cluster, monkeypatch,
                                                                   capsys, tmp_path):
    cluster, client = local_cluster
    build, config, needs = _waiting(cluster, monkeypatch, look=0.2, accelerator="kvm")
    future = client.submit(lambda: 1, resources=needs, pure=False)
    t0 = time.monotonic()
    with pytest.raises(UserError) as err:
        submit._wait(client, future, build, config, needs, tmp_path / "client.log")
    future.cancel()
    assert 3 <= time.monotonic() - t0 < 10
    said = capsys.readouterr().out.splitlines()
    assert said == ["revive: build b: waiting up to 3 s ([cluster] wait_for_worker) for a "
                    "worker offering qemu-7.2.22-kvm-x86_64, vm; workers offer: "
                    f"{next(iter(cluster.scheduler.workers.values())).name}: "
                    "qemu-7.2.22-tcg-x86_64"]
    assert str(err.value).startswith(
        f"build b: no worker of {cluster.scheduler_address} offered qemu-7.2.22-kvm-x86_64, vm "
        "within 3 s ([cluster] wait_for_worker); workers offer: ")
    assert "\n" not in str(err.value)


def test_a_placed_build_says_where(local_cluster, monkeypatch, capsys, tmp_path):
    cluster, client = local_cluster
    build, config, needs = _waiting(cluster, monkeypatch, look=0.1, accelerator="tcg")
    future = client.submit(time.sleep, 1.5, resources=needs, pure=False)
    submit._wait(client, future, build, config, needs, tmp_path / "client.log")
    worker = next(iter(cluster.scheduler.workers.values()))
    assert capsys.readouterr().out.splitlines() == [
        f"revive: build b: placed on {worker.name} ({worker.address})"]


def _builds_silently():
    from distributed import get_worker
    worker = get_worker()
    worker.log_event(f"revive-{worker.get_current_task()}",
                     {"phase": "build", "worker": worker.address})
    time.sleep(20)


def test_a_placed_build_s_deadline_is_its_timeout_and_revive_after_the_fetch(
        local_cluster, monkeypatch, tmp_path):
    from revive.config import Cluster
    from revive.machine.job import BuildRequest
    monkeypatch.setattr(submit, "LOOK", 0.1)
    monkeypatch.setattr(submit, "SLACK", 1.0)
    cluster, client = local_cluster
    needs = res.for_snapshot({"qemu": "7.2.22", "accelerator": "tcg"})
    build = BuildRequest(name="b", command="true", env={}, outputs=(), timeout=1.0,
                         shares={}, revive_timeout=1.5)
    config = Cluster(scheduler=cluster.scheduler_address, store="file:///x")
    future = client.submit(_builds_silently, resources=needs, pure=False)
    t0 = time.monotonic()
    with pytest.raises(UserError, match=r"^build b: no answer from 0 \(inproc://.*\) in time"):
        submit._wait(client, future, build, config, needs, tmp_path / "client.log")
    future.cancel()
    assert 3.0 <= time.monotonic() - t0 < 8


def test_an_unreachable_scheduler_names_the_config_key(monkeypatch, tmp_path):
    from revive.config import Cluster
    monkeypatch.setattr(submit, "CONNECT_TIMEOUT", 2.0)
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"^config.toml: \[cluster\] scheduler: cannot reach "
                       rf"tcp://127.0.0.1:{port} within 2 s"):
        submit.client_for(Cluster(scheduler=f"tcp://127.0.0.1:{port}", store="file:///x",
                                  insecure=True), tmp_path / "client.log")


LOGS_A_LOST_SCHEDULER = """
import logging, sys
from pathlib import Path
import distributed  # sets up handlers of its own
from revive.cluster import submit
log = Path(sys.argv[1])
submit.libraries_log(log)
try:
    raise ConnectionError("Stream is closed")
except ConnectionError:
    logging.getLogger("distributed.client").exception("Error in callback")
    logging.getLogger("tornado.application").exception("Exception in callback")
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
logging.getLogger("distributed.comm").info("below WARNING")
text = log.read_text()
submit.libraries_log(log)        # again: the same file, not emptied
assert log.read_text() == text
"""


def test_dask_s_messages_go_to_the_client_log_not_the_terminal(tmp_path):
    # distributed.client and tornado.application keep levels of their own:
    # a level on "distributed" alone let a lost scheduler's traceback through.
    log = tmp_path / "logs" / submit.CLIENT_LOG
    proc = subprocess.run([sys.executable, "-c", LOGS_A_LOST_SCHEDULER, str(log)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""
    text = log.read_text()
    assert text.count("Traceback") == 3 and "Stream is closed" in text, text
    assert "below WARNING" not in text


def test_the_task_unpickles_where_revive_is_not_installed():
    # The scheduler unpickles every task but has no revive on its path.
    import cloudpickle
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(thunk.task())     # so Dask falls back to cloudpickle, by value
    data = cloudpickle.dumps(thunk.task())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c",
                           "import sys, cloudpickle; f = cloudpickle.loads(sys.stdin.buffer.read()); "
                           "assert 'tasks' not in sys.modules; print(f.__name__)"],
                          input=data, capture_output=True, cwd="/", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.strip() == b"run_build_on_worker"


def test_worker_resources_name_qemu_accel_and_arch():
    assert res.offered("7.2.22", ["kvm", "tcg"], 2) == {
        "vm": 2, f"qemu-7.2.22-kvm-{res.arch()}": 2, f"qemu-7.2.22-tcg-{res.arch()}": 2}
    assert res.for_snapshot({"qemu": "8.0.0", "accelerator": "kvm"}) == {
        "vm": 1, "qemu-8.0.0-kvm-x86_64": 1}


def test_an_insecure_cluster_is_warned_about_once_per_run(local_cluster, tmp_path, capsys):
    from revive.config import Cluster
    cluster, client = local_cluster
    config = Cluster(scheduler="tcp://h:8786", store="file:///x", insecure=True)
    submit.announce_dashboard(client, config, tmp_path)
    submit.announce_dashboard(client, config, tmp_path)     # the same run: said once
    said = capsys.readouterr().out.splitlines()
    assert said[1:] == ["revive: warning: [cluster] insecure = true: anyone who reaches "
                        "tcp://h:8786 can run code on its workers"]
    assert said[0].startswith(f"revive: cluster {cluster.scheduler_address}: dashboard ")


def test_a_foreign_snapshot_needs_an_emulator_of_its_arch_under_tcg():
    assert res.for_snapshot({"qemu": "7.2.22", "accelerator": "tcg", "arch": "arm64"}) == {
        "vm": 1, "qemu-7.2.22-tcg-aarch64": 1}
    foreign = {"aarch64": "7.2.22", "riscv64": "7.2.22", res.arch(): "7.2.22"}
    offered = res.offered("7.2.22", ["kvm", "tcg"], 1, foreign=foreign)
    assert offered["qemu-7.2.22-tcg-aarch64"] == 1 == offered["qemu-7.2.22-tcg-riscv64"]
    assert "qemu-7.2.22-kvm-aarch64" not in offered          # KVM: the host's own arch only
    assert "qemu-7.2.22-tcg-aarch64" not in res.offered("7.2.22", ["kvm"], 1, foreign=foreign)
