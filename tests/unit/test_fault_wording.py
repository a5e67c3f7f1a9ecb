"""Issue 19.6: how faults are worded, each on the real code path."""

import errno
import os
import types

from doit.exceptions import TaskFailed

from revive import config
from revive.core.errors import UserError
from tasks.build import outcome
from tasks.common import action
from tasks.summary import row

import json
import pytest


def _result(**changes) -> dict:
    base = {"build": "b", "exit_code": None, "timed_out": False, "vm_died": False,
            "failure": "x", "outputs": [], "missing_outputs": [], "refused_outputs": [],
            "timings": {"total": 1.0}}
    return {**base, **changes}


@pytest.mark.parametrize("changes, said, shown", [
    ({"vm_died": True}, "the VM died", "VM died"),
    ({"timed_out": True}, "timed out", "timed out"),
    ({}, "no exit code (failed)", "failed"),
    ({"exit_code": 3}, "exit 3", "exit 3"),
])
def test_no_exit_code_is_never_exit_none(tmp_path, changes, said, shown):
    result = _result(**changes)
    assert outcome(result) == said
    (tmp_path / "result.json").write_text(json.dumps(result))
    assert row("b", tmp_path, "failed", 0)["result"] == shown


def test_a_full_disk_in_a_build_action_names_the_build(tmp_path):
    @action
    def run_build(paths):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "log"))
    failed = run_build(None, task=types.SimpleNamespace(name="build:hello"))
    assert isinstance(failed, TaskFailed)
    message = failed.message
    assert message.startswith("revive: build hello: no space left on the filesystem at ")
    assert "run_build" not in message


def test_a_missing_share_folder_is_a_config_error_at_load(tmp_path):
    (tmp_path / "config.toml").write_text('''
[guest]
kind = "tiny"
[shares.src]
guest = "/mnt/src"
host = "src"
[shares.xchg]
guest = "/mnt/xchg"
mode = "rw"
[builds.hello]
command = "true"
''')
    with pytest.raises(UserError) as err:
        config.load(tmp_path / "config.toml")
    assert str(err.value) == (f"config.toml: [builds.hello] shares.src (or [shares.src] host): "
                              f"host folder {tmp_path / 'src'} does not exist; create it "
                              "or name another")
    (tmp_path / "src").mkdir()
    assert config.load(tmp_path / "config.toml").builds["hello"].shares["src"] == tmp_path / "src"
