"""Faults real QEMU won't produce on demand, through a fake QMP peer that
speaks the real protocol over a socketpair: a migration that fails, and a
QEMU that dies while revive waits on it."""

import json
import socket
import subprocess
import threading
import time

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from revive.core.errors import UserError
from revive.qemu import saved
from revive.qemu import Qemu


class FakeQMP(threading.Thread):
    """Greets, accepts capabilities, answers commands from ``replies``."""

    def __init__(self, sock, replies):
        super().__init__(daemon=True)
        self.sock = sock
        self.replies = replies
        self.seen = []

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\r\n")

    def run(self):
        self.send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
                                       "package": ""}, "capabilities": []}})
        # Like QEMU, parse a stream of JSON objects: clients send no newlines.
        decoder = json.JSONDecoder()
        buf = ""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return
                buf += data.decode()
                while buf.strip():
                    try:
                        msg, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        break
                    buf = buf.lstrip()[end:]
                    self.answer(msg)
        except OSError:
            return

    def answer(self, msg):
        name = msg["execute"]
        self.seen.append(name)
        reply = self.replies.get(name, {})
        self.send({"return": reply() if callable(reply) else reply, "id": msg.get("id")})


def fake_machine(tmp_path, replies, process):
    ours, theirs = socket.socketpair()
    server = FakeQMP(theirs, replies)
    server.start()
    machine = Qemu([], name="fake", logdir=tmp_path)
    machine.qemu_log.write_text("+ qemu (fake)\n")
    machine.proc = process
    machine._sock = ours
    machine.qmp = QEMUMonitorProtocol(ours)
    machine.qmp.connect()
    machine.qmp.settimeout(5)
    return machine, server


def test_a_failed_migration_is_one_line_naming_the_log(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    machine, server = fake_machine(tmp_path, {
        "query-migrate": {"status": "failed", "error-desc": "disk full"}}, proc)
    try:
        with pytest.raises(UserError) as err:
            saved.save(machine, tmp_path, "zstd", timeout=10)
        assert "disk full" in str(err.value)
        assert str(machine.qemu_log) in str(err.value)
        assert "\n" not in str(err.value)
        # query-status is the run-state watch of every wait round
        assert [c for c in server.seen if c != "query-status"][-3:] == ["stop", "migrate", "query-migrate"]
    finally:
        machine.kill()
    assert proc.poll() is not None


def test_a_qemu_that_dies_during_revive_ends_the_wait_at_once(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    machine, _ = fake_machine(tmp_path, {
        "query-status": {"status": "inmigrate", "running": False},
        "query-migrate": {"status": "active"}}, proc)
    threading.Timer(0.3, proc.kill).start()
    start = time.monotonic()
    try:
        with pytest.raises(UserError, match="QEMU exited"):
            saved.incoming(machine, tmp_path, "zstd", timeout=60)
    finally:
        machine.kill()
    assert time.monotonic() - start < 5


def test_a_revive_that_never_pauses_times_out_with_what_it_saw(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    machine, _ = fake_machine(tmp_path, {
        "query-status": {"status": "inmigrate", "running": False},
        "query-migrate": {"status": "active"}}, proc)
    try:
        with pytest.raises(UserError, match="no answer within 1 s"):
            saved.incoming(machine, tmp_path, "zstd", timeout=1)
    finally:
        machine.kill()


def test_a_deadline_error_names_its_log_once(tmp_path):
    machine = Qemu(["-S"], name="m", logdir=tmp_path)
    err = machine.error_with_screen(UserError("SSH to the guest: no answer", log=str(machine.qemu_log)))
    assert str(err).count("(details: ") == 1
    assert str(err) == f"m: SSH to the guest: no answer (details: {machine.qemu_log})"
