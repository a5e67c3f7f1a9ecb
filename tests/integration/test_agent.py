"""Builds over QEMU's guest agent (issue 9), on the tiny guest under real
QEMU: the first command after revive, a non-root build user, 150 MB of
output streamed whole, exit codes, a deadline, a dead agent, Ctrl-C, and the
same builds over channel = "ssh".

One project for the module (its own install and snapshot); tests run in
file order and put back what they change.
"""

import json
import shutil
import time

import pytest

from tests import configs

from .conftest import REPO, Project, interrupt, qemu_processes

pytestmark = pytest.mark.integration

BIG = 150 * 2 ** 20

CONFIG = configs.tiny(
    "agent-test", src="hello", answers={"user": "builder"}, timeouts={"revive": "20s"},
    builds={
        "hello": configs.build("sh /mnt/src/build.sh", outputs=["hello", "hello.txt"],
                               shares={"src": "hello"}),
        "who": configs.build("id -un > /mnt/xchg/who; date +%s > /mnt/xchg/clock; "
                             "echo $GREETING", outputs=["who", "clock"],
                             env={"GREETING": "hello from the environment"}),
        "big": configs.build(f"head -c {BIG} /dev/zero | tr '\\0' x; echo; echo END",
                             timeout="10m"),
        "code0": configs.build("true", timeout="1m"),
        "code1": configs.build("echo failing; exit 1", timeout="1m"),
        "code137": configs.build("sh -c 'kill -9 $$'; exit $?", timeout="1m"),
        "killed": configs.build("kill -9 $$", timeout="1m"),
        "slow": configs.build("echo started; sleep 60; echo finished", timeout="3s"),
        "closes": configs.build("echo before; exec >&- 2>&-; sleep 1; exit 3", timeout="1m"),
        "removes": configs.build("echo before; rm -f /run/revive-log/*; echo after; exit 4",
                                 timeout="1m"),
    })


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("agent")
    shutil.copytree(REPO / "examples" / "hello", root / "hello")
    configs.write(root, CONFIG)
    return Project(root)


def test_first_command_over_the_agent_after_revive(project):
    project.doit("build:hello")
    meta = json.loads((project.artifacts / "snapshot" / "meta.json").read_text())
    assert meta["channel"]["kind"] == "agent"
    assert "guest-sync" not in json.dumps(meta)      # channel info, not a transcript
    assert any("name=org.qemu.guest_agent.0" in a for a in meta["argv"])
    # The resident runner waits in the saved guest for a copy's first command.
    assert any("name=org.revive.run.0" in a for a in meta["argv"])
    assert meta["channel"]["runner"]["pid"] > 1 and "arm_runner" in meta["timings"]
    assert "agent_sync" in meta["timings"]           # the snapshot's readiness
    result = project.result("hello")
    assert result["exit_code"] == 0 and result["outputs"] == ["hello", "hello.txt"]
    log = (project.artifacts / "builds" / "hello" / "log").read_text()
    assert "building hello on Linux" in log and "as builder" in log
    console = (project.artifacts / "logs" / "build-hello-serial.log").read_text(errors="replace")
    assert "Linux version" not in console            # revived, not booted
    # The socket was in the build's private folder, which is gone.
    assert not list((project.artifacts / "work").glob("build-hello-*"))


def test_a_build_as_the_non_root_user_with_its_env_and_clock(project):
    project.doit("build:who")
    out = project.artifacts / "builds" / "who" / "outputs"
    assert (out / "who").read_text() == "builder\n"
    # The revived guest's clock was set to the host's, not left at the snapshot's.
    assert abs(int((out / "clock").read_text()) - time.time()) < 30
    log = (project.artifacts / "builds" / "who" / "log").read_text()
    assert log == "hello from the environment\n"


def test_150_mb_of_output_arrive_whole_and_can_be_followed(project):
    live = project.artifacts / "logs" / "build-big.log"
    proc = project.spawn("build:big")
    sizes = []
    try:
        while proc.poll() is None:
            if live.exists():
                sizes.append(live.stat().st_size)
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stdout + stderr
    # Read while it grew: sizes between nothing and all of it were seen.
    assert any(0 < s < BIG for s in sizes), sizes[-5:]
    log = project.artifacts / "builds" / "big" / "log"
    assert log.stat().st_size == BIG + len("\nEND\n")
    with open(log, "rb") as fh:
        assert fh.read(4096) == b"x" * 4096
        fh.seek(BIG - 4)
        assert fh.read() == b"xxxx\nEND\n"
    assert project.result("big")["exit_code"] == 0


def test_exit_codes_come_back_as_the_command_gave_them(project):
    proc = project.doit("--continue", "build:code0", "build:code1", "build:code137",
                        "build:killed", check=False)
    assert proc.returncode != 0
    assert [project.result(n)["exit_code"] for n in ("code0", "code1", "code137")] == [0, 1, 137]
    # The command's own shell killed: the agent reports the signal as a shell
    # would (SSH reports -1: paramiko drops exit-signal).
    assert project.result("killed")["exit_code"] == 137
    assert (project.artifacts / "builds" / "code1" / "log").read_text() == "failing\n"
    assert "build code1: the command exited with code 1; log: " in proc.stderr + proc.stdout


def test_a_command_that_closes_or_removes_its_output_still_ends(project):
    """The host learns that a command ended from the stream share; a command
    that hides that (closes its output, deletes the files) still ends with
    its own exit code, well within the safety net's pace. (Unmounting the
    share needs root: the next test.)"""
    start = time.monotonic()
    proc = project.doit("--continue", "build:closes", "build:removes", check=False)
    assert proc.returncode != 0
    assert [project.result(n)["exit_code"] for n in ("closes", "removes")] == [3, 4]
    for name in ("closes", "removes"):
        assert project.result(name)["timings"]["command"] < 4, project.result(name)
    assert time.monotonic() - start < 120
    assert (project.artifacts / "builds" / "closes" / "log").read_text() == "before\n"


def test_the_guest_is_not_asked_while_a_command_runs(project):
    """While a build's command runs the host watches its side of the stream
    share; qemu-ga is asked only when the command ended (and every few
    seconds as a safety net), not polled."""
    from revive.machine import revived

    artifacts = project.artifacts
    work = artifacts / "work" / "quiet-agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    asked = []
    try:
        with revived(artifacts / "snapshot", artifacts=artifacts, name="quiet-agent",
                     shares={"src": project.root / "hello"},
                     key=artifacts / "keys" / "id_ed25519", work=work,
                     logs=artifacts / "logs", timeout=20) as copy:
            call = copy.channel.agent.call

            def counting(command, *args, **kwargs):
                asked.append((time.monotonic(), command))
                return call(command, *args, **kwargs)
            copy.channel.agent.call = counting
            chunks = []
            start = time.monotonic()
            result = copy.run("echo one; sleep 4; echo two; exit 7", timeout=60,
                              sink=chunks.append)
            end = time.monotonic()
            status = [t for t, c in asked if c == "guest-exec-status"]
            # As root: a command that unmounts the stream share (its .done
            # cannot arrive) still ends, when its output is closed.
            hidden = copy.run("echo before; umount -l /run/revive-log; sleep 1; "
                              "exit 5 # a comment", timeout=60, sink=lambda b: None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.exit_code == 7
    assert b"".join(chunks) == b"one\ntwo\n"
    assert end - start < 4 + 3
    # No question while it slept, then the confirmations.
    assert [t for t in status if t < start + 3.5] == [], asked
    assert len(status) <= 4, asked
    assert hidden.exit_code == 5 and hidden.seconds < 4, hidden


def _copy(project, name: str, drop_runner: bool = False):
    """A revived copy, connected and prepared as a build's; ``drop_runner``:
    as if its snapshot had no runner (made before it)."""
    from revive.machine import Machine
    artifacts = project.artifacts
    work = artifacts / "work" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    machine = Machine.revive(artifacts / "snapshot", artifacts=artifacts, name=name,
                             shares={"src": project.root / "hello"},
                             key=artifacts / "keys" / "id_ed25519", work=work,
                             logs=artifacts / "logs", timeout=20)
    if drop_runner:
        machine.meta = {**machine.meta, "channel": {
            k: v for k, v in machine.meta["channel"].items() if k != "runner"}}
    return machine, work


def _streamed(machine, command: str, timeout: float = 60):
    chunks = []
    result = machine.run(command, timeout=timeout, sink=chunks.append)
    return result, b"".join(chunks).decode()


def test_the_first_command_runs_in_the_resident_runner_and_later_ones_over_the_agent(project):
    """The runner's shell runs the first command's wrapper as itself (its
    pid, recorded at the snapshot, is `$$`); the next command is one the
    agent starts; a copy whose snapshot has no runner (made before it) runs
    its first command through the agent too."""
    machine, work = _copy(project, "runner-first")
    pid = machine.meta["channel"]["runner"]["pid"]
    try:
        with machine:
            machine.launch()
            machine.connect()
            assert machine.channel.runner is not None
            machine.after_revive(with_command=True)
            first, out1 = _streamed(machine, "echo $$; date +%s; exit 9")
            second, out2 = _streamed(machine, "echo $$; exit 4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert first.exit_code == 9 and out1.split()[0] == str(pid)
    assert abs(int(out1.split()[1]) - time.time()) < 30          # the prelude ran
    assert set(first.phases) == {"prepare", "command"}
    assert second.exit_code == 4 and out2.strip() != str(pid)

    machine, work = _copy(project, "runner-none", drop_runner=True)
    try:
        with machine:
            machine.launch()
            machine.connect()
            assert machine.channel.runner is None
            machine.after_revive(with_command=True)
            old, out = _streamed(machine, "echo $$; date +%s; exit 5")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert old.exit_code == 5 and out.split()[0] != str(pid)
    assert abs(int(out.split()[1]) - time.time()) < 30
    assert qemu_processes(str(project.root)) == []


def test_the_runner_s_command_past_its_deadline_is_killed_with_its_group(project):
    machine, work = _copy(project, "runner-deadline")
    try:
        with machine:
            machine.launch()
            machine.connect()
            machine.after_revive(with_command=True)
            start = time.monotonic()
            result, out = _streamed(machine, "echo started; sleep 60 & wait; echo finished",
                                    timeout=3)
            assert time.monotonic() - start < 20
            # The whole group went: no `sleep 60` is left in the guest.
            left = machine.check("ps -o comm 2>/dev/null || ps", timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.exit_code is None and result.failure == "timeout"
    assert out == "started\n"
    assert "sleep" not in left


def test_a_command_past_its_deadline_is_stopped(project):
    start = time.monotonic()
    proc = project.doit("build:slow", check=False)
    assert proc.returncode != 0
    assert time.monotonic() - start < 50                  # not the command's 60 s
    result = project.result("slow")
    assert result["timed_out"] is True and result["exit_code"] is None
    assert (project.artifacts / "builds" / "slow" / "log").read_text() == "started\n"
    assert "did not finish within [builds.slow] timeout = 3 s" in proc.stdout + proc.stderr


def test_a_dead_agent_is_one_line_naming_the_console_and_no_qemu_is_left(project):
    """The agent killed inside a revived guest: the next command over it fails
    within its deadline with one line that names the serial log."""
    from revive.channel import agent
    from revive.core.errors import UserError
    from revive.machine import revived

    artifacts = project.artifacts
    work = artifacts / "work" / "dead-agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with revived(artifacts / "snapshot", artifacts=artifacts, name="dead-agent",
                     shares={"src": project.root / "hello"},
                     key=artifacts / "keys" / "id_ed25519", work=work,
                     logs=artifacts / "logs", timeout=20) as copy:
            # Not waited for: the agent dies while it answers.
            copy.channel.agent.call("guest-exec", path="/bin/sh",
                                    arg=["-c", "sleep 0.5; kill -9 $(cat /run/qemu-ga.pid)"])
            copy.disconnect()
            time.sleep(3)
            start = time.monotonic()
            with pytest.raises(UserError) as err:
                agent.connect(agent.socket_path(work / "agent"), timeout=5,
                              alive=copy.dead, log=str(copy.qemu.serial_log))
            assert time.monotonic() - start < 15
            serial_log = copy.qemu.serial_log
    finally:
        shutil.rmtree(work, ignore_errors=True)
    message = str(err.value)
    assert "\n" not in message
    assert "the guest agent did not answer within 5 s" in message
    assert str(serial_log) in message
    assert qemu_processes(str(project.root)) == []


@pytest.mark.parametrize("channel", ["agent", "ssh"])
def test_a_vm_that_dies_under_a_check_is_said_to_have_died_on_both_channels(project, channel):
    """QEMU killed while a command runs: ``check`` (one for both channels)
    says the VM ended and how, not that the command timed out."""
    import signal
    import threading
    from revive.core.errors import UserError
    from revive.machine import Machine

    artifacts = project.artifacts
    work = artifacts / "work" / f"dies-{channel}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with Machine.revive(artifacts / "snapshot", artifacts=artifacts, name=f"dies-{channel}",
                            shares={"src": project.root / "hello"},
                            key=artifacts / "keys" / "id_ed25519", work=work,
                            logs=artifacts / "logs", timeout=20, channel=channel) as machine:
            machine.launch()
            machine.connect()
            assert machine.check("echo alive", timeout=30).strip() == "alive"
            killer = threading.Timer(1.0, lambda: machine.qemu.proc.send_signal(signal.SIGKILL))
            killer.start()
            start = time.monotonic()
            with pytest.raises(UserError) as err:
                machine.check("sleep 50", timeout=60, what="a long command")
            killer.join()
            assert time.monotonic() - start < 20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    message = str(err.value)
    assert message.startswith("a long command failed (QEMU exited (signal SIGKILL)")
    assert "timed out" not in message
    assert qemu_processes(str(project.root)) == []


def test_ctrl_c_during_an_agent_build_leaves_no_qemu_and_no_target(project):
    before = configs.edit(project.config, {"builds": {"slow": {"timeout": "5m"}}})
    live = project.artifacts / "logs" / "build-slow.log"
    live.unlink(missing_ok=True)            # left by the deadline test
    proc = project.spawn("build:slow")
    try:
        # Alone (pytest -k), the stages before the build run first.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and not (
                live.exists() and live.read_text() == "started\n"):
            time.sleep(0.1)
        assert live.read_text() == "started\n", "the command never started"
        assert qemu_processes(str(project.root)), "no copy running"
        interrupt(proc)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        configs.write(project.root, before)
    assert proc.returncode != 0
    assert qemu_processes(str(project.root)) == []
    assert not list((project.artifacts / "work").glob("build-slow-*"))
    assert not list((project.artifacts / "builds").glob(".slow.tmp-*"))


def test_the_same_builds_over_ssh(project):
    configs.edit(project.config, {"vm": {"channel": "ssh"}})
    proc = project.doit("build:hello", "build:who")
    assert proc.executed == {"snapshot", "build:hello", "build:who"}
    meta = json.loads((project.artifacts / "snapshot" / "meta.json").read_text())
    assert meta["channel"] == {"kind": "ssh"}
    assert not any("virtserialport" in a for a in meta["argv"])
    assert project.result("hello")["exit_code"] == 0
    out = project.artifacts / "builds" / "who" / "outputs"
    assert (out / "who").read_text() == "builder\n"
    assert abs(int((out / "clock").read_text()) - time.time()) < 30
    proc = project.doit("--continue", "build:code1", "build:code137", check=False)
    assert [project.result(n)["exit_code"] for n in ("code1", "code137")] == [1, 137]
