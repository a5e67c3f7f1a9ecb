"""The Machine object without a guest: what it does before QEMU runs."""

import pytest

from revive.core.errors import UserError
from revive.machine import Login, Machine


def test_a_machine_cancelled_before_launch_never_starts_qemu(tmp_path):
    """A cluster task cancelled while its worker still fetched: the build's
    machine refuses to start, in one line saying why."""
    machine = Machine.boot(None, ["-machine", "none"], {}, name="build-x", logs=tmp_path,
                           work=tmp_path, login=Login("root", tmp_path / "key", "ssh-ed25519 AAAA"),
                           timeout=5, shares=[])
    machine.cancel("cancelled by the submitting host")
    with machine, pytest.raises(UserError) as err:
        machine.launch()
    assert str(err.value) == "build-x: cancelled by the submitting host"
    assert machine.qemu is None
    assert not list(tmp_path.glob("*-qemu.log"))
