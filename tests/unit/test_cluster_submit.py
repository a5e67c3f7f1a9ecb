"""The submitting side against a real in-process Dask scheduler and worker
(no QEMU): an unplaceable snapshot and an unreachable scheduler are one
line; the submitted task reaches a scheduler without revive on its path."""

import os
import pickle
import socket
import subprocess
import sys

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


def test_a_snapshot_no_worker_can_revive_is_refused_in_one_line(local_cluster):
    cluster, client = local_cluster
    submit.check_placeable(client, res.for_snapshot({"qemu": "7.2.22", "accelerator": "tcg"}),
                           cluster.scheduler_address)
    with pytest.raises(UserError) as err:
        submit.check_placeable(client, res.for_snapshot({"qemu": "7.2.22", "accelerator": "kvm"}),
                               cluster.scheduler_address)
    assert "can revive this snapshot (qemu-7.2.22-kvm-x86_64); workers offer: " in str(err.value)
    assert "qemu-7.2.22-tcg-x86_64" in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unreachable_scheduler_names_the_config_key(monkeypatch):
    monkeypatch.setattr(submit, "CONNECT_TIMEOUT", 2.0)
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"^config.toml: \[cluster\] scheduler: cannot reach "
                       rf"tcp://127.0.0.1:{port} within 2 s"):
        submit.client_for(f"tcp://127.0.0.1:{port}")


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


def test_a_foreign_snapshot_needs_an_emulator_of_its_arch_under_tcg():
    assert res.for_snapshot({"qemu": "7.2.22", "accelerator": "tcg", "arch": "arm64"}) == {
        "vm": 1, "qemu-7.2.22-tcg-aarch64": 1}
    foreign = {"aarch64": "7.2.22", "riscv64": "7.2.22", res.arch(): "7.2.22"}
    offered = res.offered("7.2.22", ["kvm", "tcg"], 1, foreign=foreign)
    assert offered["qemu-7.2.22-tcg-aarch64"] == 1 == offered["qemu-7.2.22-tcg-riscv64"]
    assert "qemu-7.2.22-kvm-aarch64" not in offered          # KVM: the host's own arch only
    assert "qemu-7.2.22-tcg-aarch64" not in res.offered("7.2.22", ["kvm"], 1, foreign=foreign)
