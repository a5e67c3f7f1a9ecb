"""The guest agent client against faults a real qemu-ga cannot produce on
demand: stale answers and garbage left in the pipe by an earlier client, an
agent that never answers, a QEMU that dies mid-wait. (The real agent is
tested under QEMU in tests/integration/test_agent.py.)"""

import json
import shutil
import socket
import threading
import time

import pytest

from revive.config import parse
from revive.core.errors import UserError
from revive.channel import agent


class Peer(threading.Thread):
    """The guest side of the pipe: answers each request with ``reply``."""

    def __init__(self, sock, reply):
        super().__init__(daemon=True)
        self.sock, self.reply = sock, reply
        self.requests = []

    def run(self):
        buffer = b""
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            buffer += data
            # Requests are JSON objects; the client puts 0xFF before a sync.
            while True:
                buffer = buffer.lstrip(b"\xff\n")
                try:
                    request, end = json.JSONDecoder().raw_decode(buffer.decode())
                except ValueError:
                    break
                buffer = buffer[len(buffer.decode()[:end].encode()):]
                self.requests.append(request)
                out = self.reply(request)
                if out:
                    self.sock.sendall(out)


def pair(reply, alive=lambda: None):
    ours, theirs = socket.socketpair()
    peer = Peer(theirs, reply)
    peer.start()
    return agent.Agent(ours, alive=alive, log="/logs/build-x-serial.log"), peer


def sync_answer(request, prefix=b""):
    if request["execute"] == "guest-sync-delimited":
        ident = request["arguments"]["id"]
        return prefix + b"\xff" + json.dumps({"return": ident}).encode() + b"\n"
    return json.dumps({"return": {"pid": 42}}).encode() + b"\n"


def test_sync_drops_stale_answers_and_garbage_before_the_delimiter():
    stale = b'{"return": {"pid": 7}}\n{"retu' + b"\x00garbage"
    client, _ = pair(lambda r: sync_answer(r, prefix=stale))
    client.sync(5)
    assert client.call("guest-exec", path="/bin/true") == {"pid": 42}


def test_sync_resends_with_a_new_id_until_the_agent_answers():
    seen = []

    def reply(request):
        seen.append(request["arguments"]["id"])
        # The first request is lost (as when it lands before the agent reads).
        return sync_answer(request) if len(seen) > 1 else None
    client, _ = pair(reply)
    old = agent.SYNC_RETRY
    agent.SYNC_RETRY = 0.2
    try:
        client.sync(5)
    finally:
        agent.SYNC_RETRY = old
    assert len(seen) == 2 and seen[0] != seen[1]


def test_an_agent_that_never_answers_is_one_line_naming_the_console():
    client, _ = pair(lambda r: None)
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        client.sync(1, setting="[timeouts] revive")
    assert time.monotonic() - start < 3
    assert str(err.value) == ("the guest agent did not answer within 1 s ([timeouts] revive); "
                              "the guest's console: /logs/build-x-serial.log")


def test_a_dead_qemu_ends_the_wait_at_once():
    client, _ = pair(lambda r: None, alive=lambda: "QEMU exited with code 1")
    start = time.monotonic()
    with pytest.raises(UserError, match="QEMU exited with code 1"):
        client.sync(30)
    assert time.monotonic() - start < 2


def test_an_agent_error_is_one_line():
    client, _ = pair(lambda r: json.dumps(
        {"error": {"class": "GenericError", "desc": "Guest agent command failed"}}).encode()
        + b"\n")
    with pytest.raises(UserError, match="guest agent guest-exec failed: Guest agent command"):
        client.call("guest-exec", path="/nonexistent")


def test_the_follower_refuses_a_link_planted_by_the_guest(tmp_path):
    (tmp_path / "secret").write_text("host file")
    (tmp_path / "out-1").symlink_to(tmp_path / "secret")
    follower = agent._Follower(tmp_path / "out-1")
    with pytest.raises(UserError, match="cannot be read"):
        follower.read()


def test_socket_path_too_long_is_one_line(tmp_path):
    with pytest.raises(UserError, match="longer than a unix socket allows"):
        agent.socket_path(tmp_path / ("x" * 120))


WINDOWS = {"kind": "windows", "iso": "w.iso", "iso_sha256": "a" * 64, "image": 6,
           "windows_version": "10", "cygwin_mirror": "m"}


def _config(vm: str, kind: str = "tiny"):
    text = {"guest": WINDOWS if kind == "windows" else {"kind": kind}, "vm": vm,
            "answers": {},
            "shares": {"xchg": {"guest": "/mnt/xchg" if kind != "windows" else "X:",
                                "mode": "rw"}}}
    from pathlib import Path
    return parse(text, Path("/tmp/config.toml"))


def test_channel_defaults_to_the_agent_on_linux_and_ssh_on_windows():
    assert _config({}).vm.channel == "agent"
    assert _config({}, "debian").vm.channel == "agent"
    assert _config({"channel": "ssh"}).vm.channel == "ssh"
    assert _config({}, "windows").vm.channel == "ssh"


def test_the_agent_is_refused_for_windows_in_one_line():
    with pytest.raises(UserError) as err:
        _config({"channel": "agent"}, "windows")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith('config.toml: [vm] channel: "agent" is not available '
                                     "for a windows guest (QEMU's guest agent needs")
    assert str(err.value).endswith('use channel = "ssh"')


def test_an_unknown_channel_names_the_key():
    with pytest.raises(UserError, match=r"\[vm\] channel"):
        _config({"channel": "serial"})


def run_wrapper(tmp_path, monkeypatch, command, prelude=None, shell=("/bin/sh",)):
    """The guest side of a streamed command, run by a real shell (dash;
    busybox's, the tiny guest's) with the stream share as a plain folder."""
    import subprocess
    monkeypatch.setattr(agent, "STREAM_GUEST", str(tmp_path))
    monkeypatch.setattr(agent, "mount_stream_command", lambda fresh=False, mount="mount": "true")
    script = agent._wrapper(command, "out-1", prelude)
    proc = subprocess.run([*shell, "-c", script], timeout=30)
    done = agent._small_file(tmp_path / "out-1.done")
    return proc.returncode, (tmp_path / "out-1").read_bytes() if (
        tmp_path / "out-1").exists() else None, done


SHELLS = [("/bin/sh",)] + ([("busybox", "sh")] if shutil.which("busybox") else [])


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command, code, output", [
    ("echo hi; exit 3", 3, b"hi\n"),
    ("exec sh -c 'echo replaced; exit 4'", 4, b"replaced\n"),
    ("echo err >&2 # a comment at the end", 0, b"err\n"),
])
def test_the_wrapper_outlives_exit_and_exec_and_leaves_the_done_file(
        tmp_path, monkeypatch, command, code, output, shell):
    rc, out, done = run_wrapper(tmp_path, monkeypatch, command, prelude="echo prepared",
                                shell=shell)
    assert (rc, out) == (code, output)
    phases = agent._guest_phases(done)
    assert set(phases) == {"prepare", "command"} and all(v >= 0 for v in phases.values())
    assert agent._done_exit(done) == code       # the host needs no guest-exec-status
    assert (tmp_path / "out-1.prepare").read_bytes() == b"prepared\n"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("prelude", ["echo 'revive: no clock'; exit 1",
                                     "echo 'revive: no clock'; false"])
def test_a_failed_prelude_stops_before_the_command(tmp_path, monkeypatch, shell, prelude):
    # The prelude runs in the wrapper's own shell: an `exit` in it ends the
    # wrapper, which must still leave NAME.done saying the prelude failed.
    rc, out, done = run_wrapper(tmp_path, monkeypatch, "echo ran", prelude=prelude,
                                shell=shell)
    assert rc == 1 and out is None
    assert agent._guest_phases(done) is None and agent._done_exit(done) is None
    err = agent._prelude_failed("preparing the revived guest", rc,
                                (tmp_path / "out-1.prepare").read_text())
    assert str(err) == ("preparing the revived guest (clock, randomness, shares) failed "
                        "(exit 1): revive: no clock")


@pytest.mark.parametrize("done", ["", "garbage", "1 2", "5 4 3", "1 2 1e99", "nan nan nan"])
def test_a_missing_or_garbled_done_file_gives_no_timings(done):
    assert agent._guest_phases(done) == {}


@pytest.mark.parametrize("done", ["", "prepare", "1 2 3", "1 2 3 -1", "1 2 3 256", "1 2 3 x",
                                  "1 2 3 0 0"])
def test_an_incomplete_done_file_leaves_the_exit_code_to_the_agent(done):
    assert agent._done_exit(done) is None


def run_sourced(tmp_path, monkeypatch, command, shell):
    """The wrapper as the resident runner runs it: its shell sources the
    port (here a FIFO) with `.` and execs `sh` for what the host wrote; the
    host keeps its side open, so no end of input comes."""
    import os
    import subprocess
    monkeypatch.setattr(agent, "STREAM_GUEST", str(tmp_path))
    monkeypatch.setattr(agent, "mount_stream_command", lambda fresh=False, mount="mount": "true")
    port = tmp_path / "port"
    os.mkfifo(port)
    proc = subprocess.Popen([*shell, "-c", f". {port}; exit {agent.RUNNER_GONE}"])
    with open(port, "wb") as host:
        host.write(agent.runner_input(agent._wrapper(command, "out-1", "echo prepared")))
        host.flush()
        try:
            rc = proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    done = agent._small_file(tmp_path / "out-1.done")
    return rc, (tmp_path / "out-1").read_bytes(), done


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command, code, output", [
    ("echo hi; exit 3", 3, b"hi\n"),
    ("exec sh -c 'echo replaced; exit 4'", 4, b"replaced\n"),
    ("echo err >&2 # a comment at the end", 0, b"err\n"),
])
def test_the_runner_s_shell_runs_the_wrapper_as_sh_c_does(tmp_path, monkeypatch, shell,
                                                          command, code, output):
    rc, out, done = run_sourced(tmp_path, monkeypatch, command, shell)
    assert (rc, out) == (code, output)
    assert agent._done_exit(done) == code
    assert (tmp_path / "out-1.prepare").read_bytes() == b"prepared\n"


def runner_pair(alive=lambda: None):
    ours, theirs = socket.socketpair()
    return agent.Runner(ours, 7, log="/logs/build-x-serial.log"), theirs


class Spawner:
    """The agent session's two calls arm_runner makes (qemu-ga's answers)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)

    def _spawn(self, script, capture):
        assert "echo" not in script         # the port is opened once, by `.`
        return 153

    def _status(self, pid):
        assert pid == 153
        return self.statuses.pop(0) if self.statuses else {"exited": False}


def arm(tmp_path, session, port_open, timeout=5, alive=lambda: None):
    import socket as socket_module
    path = tmp_path / "agent.sock.run"
    path.unlink(missing_ok=True)
    server = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        return agent.arm_runner(session, path, timeout=timeout, alive=alive,
                                log="/logs/snapshot-serial.log", port_open=port_open)
    finally:
        server.close()


def test_the_runner_is_armed_once_its_port_is_open(tmp_path):
    opens = iter([False, False, True])
    runner = arm(tmp_path, Spawner([]), lambda: next(opens))
    assert runner.pid == 153
    runner.close()


def test_a_runner_that_ends_before_it_opens_its_port_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        arm(tmp_path, Spawner([{"exited": False}, {"exited": True, "exitcode": 126}]),
            lambda: False)
    assert "ended (exit 126) before it opened its port" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_runner_that_never_opens_its_port_ends_at_its_deadline_and_a_dead_qemu_at_once(
        tmp_path):
    start = time.monotonic()
    with pytest.raises(UserError, match="opening its port .* no answer within 1 s"):
        arm(tmp_path, Spawner([]), lambda: False, timeout=1)
    assert 1 <= time.monotonic() - start < 3
    start = time.monotonic()
    with pytest.raises(UserError, match="QEMU exited"):
        arm(tmp_path, Spawner([]), lambda: False, timeout=30,
            alive=lambda: "QEMU exited (code 1)")
    assert time.monotonic() - start < 2


def test_the_port_counts_as_open_only_for_the_runner_s_own_chardev():
    class Qemu:
        def __init__(self, chardevs):
            self.chardevs = chardevs

        def cmd(self, name):
            assert name == "query-chardev"
            return self.chardevs
    path = "/p/agent/agent.sock.run"
    agent_open = {"label": "ch0", "filename": "unix:/p/agent/agent.sock,server=on",
                  "frontend-open": True}
    runner_closed = {"label": "ch1", "filename": f"unix:{path},server=on",
                     "frontend-open": False}
    assert not agent.port_opened(Qemu([agent_open, runner_closed]), path)
    assert agent.port_opened(Qemu([agent_open, {**runner_closed, "frontend-open": True}]), path)


def test_the_runner_takes_the_first_command_only_when_armed_in_a_fresh_snapshot():
    armed = {"channel": agent.meta("agent", 153)}
    assert agent.runner_pid(armed) == 153
    assert agent.runner_pid({"channel": agent.meta("agent")}) is None     # made before it
    assert agent.runner_pid({**armed, "kept": {"build": "x"}}) is None    # its runner ran
    assert agent.runner_pid({"channel": agent.meta("ssh")}) is None
    for pid in ("153", 1, 0, -5, None, 1.5):
        assert agent.runner_pid({"channel": {**armed["channel"],
                                             "runner": {"pid": pid}}}) is None


def test_a_runner_that_does_not_take_a_long_command_fails_at_its_deadline():
    runner, _guest = runner_pair()          # the guest side never reads
    start = time.monotonic()
    with pytest.raises(UserError, match="did not take the command within 1 s"):
        runner.send("x" * (8 << 20), timeout=1)
    assert time.monotonic() - start < 3
    runner.close()
