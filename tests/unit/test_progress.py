"""The status line of long stages and a build's live output: plain lines
when not a terminal, one line rewritten in place on a real pty, and the
guest's control characters never reaching the terminal."""

import io
import os
import pty
import time

from revive.core import progress
from revive.core.progress import StatusLine, last_line


def test_last_line_reads_the_tail_and_drops_escape_sequences(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"x" * 100000 + b"\nBooting\r\n\x1b[2J\x1b[31mstep 3: unpacking\x1b[0m\x07\r\n\n")
    assert last_line(log) == "step 3: unpacking"
    assert last_line(tmp_path / "missing.log") == ""


def test_plain_lines_name_the_stage_the_time_and_the_console(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("[    1.0] Linux version 6.1\n")
    out = io.StringIO()
    with StatusLine("install", console=log, stream=out, plain_every=0.2):
        time.sleep(0.3)
        log.write_text("[    1.0] Linux version 6.1\ninstalling: copying the system\n")
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "revive: install: 0 s · [    1.0] Linux version 6.1"
    assert lines[-1] == "revive: install: 1 s · installing: copying the system" or \
        lines[-1] == "revive: install: 0 s · installing: copying the system"


def test_a_stage_detail_replaces_the_console_line(tmp_path):
    out = io.StringIO()
    with StatusLine("install", console=tmp_path / "none", detail=lambda: "step 2/5",
                    stream=out, plain_every=0.1):
        time.sleep(0.25)
    assert out.getvalue().splitlines()[0] == "revive: install: 0 s · step 2/5"


def test_on_a_terminal_the_line_is_rewritten_in_place(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("waiting for sshd\n")
    master, slave = pty.openpty()
    with open(slave, "w", closefd=True) as terminal:
        with StatusLine("snapshot", console=log, stream=terminal):
            time.sleep(2.3)
        terminal.flush()
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    text = data.decode(errors="replace")
    assert "snapshot: 2 s · waiting for sshd" in text
    assert "\r" in text or "\x1b[" in text          # redrawn, not appended
    assert text.count("\n") <= 2


def test_a_build_echoes_its_lines_only_when_asked(monkeypatch):
    log, out = io.BytesIO(), io.StringIO()
    sink = progress.build_sink(log, "hello", stream=out)
    sink(b"configure: ok\nmak")
    assert log.getvalue() == b"configure: ok\nmak" and out.getvalue() == ""
    monkeypatch.setenv("REVIVE_VERBOSE", "1")
    log, out = io.BytesIO(), io.StringIO()
    sink = progress.build_sink(log, "hello", stream=out)
    sink(b"configure: ok\nmak")
    sink(b"e: \x1b[1mdone\x1b[0m\n")
    assert out.getvalue() == "hello | configure: ok\nhello | make: done\n"
    assert log.getvalue() == b"configure: ok\nmake: \x1b[1mdone\x1b[0m\n"
