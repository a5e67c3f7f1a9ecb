"""`doit shell` driven through a real pty, as a person at a terminal would:
a command typed in the guest answers, the window size follows the
terminal, Ctrl-C reaches the guest, `exit` ends the copy and no QEMU is
left. A failing build with keep_failed keeps its copy, and the shell on
that state sees what the command left in /tmp, its process still running.
The revive command opens the same shell as the clone's doit.
"""

import sys
import time
import tomllib
from pathlib import Path

import pytest

from .conftest import qemu_processes
from .terminal import PROMPT, Terminal

pytestmark = pytest.mark.integration


def build_user(project) -> str:
    return tomllib.loads(project.config.read_text()).get("answers", {}).get("user", "root")


FAILS_KEPT = """
[builds.post-mortem]
command = "echo left-behind > /tmp/post-mortem.txt; sleep 600 >/dev/null 2>&1 & echo $! > /tmp/sleeper.pid; exit 4"
shares = { src = "other" }
timeout = "1m"
keep_failed = true
"""


def test_a_shell_in_a_copy_answers_follows_the_window_and_ends_with_exit(built):
    term = Terminal(built, "shell:hello")
    try:
        term.expect("leave with exit", timeout=120)
        term.expect(PROMPT, timeout=60)         # the guest shell's prompt
        assert term.run("echo $((6*7))").strip() == "42"
        # The build's shares are mounted, the build's sources read-only.
        listing = term.run("ls /mnt/src; grep -c ' /mnt/' /proc/mounts")
        assert "build.sh" in listing and "hello.in" in listing
        assert term.run("id -un").strip() == build_user(built)
        assert term.run("stty size").strip() == "30 100"
        term.resize(40, 120)                    # the kernel sends SIGWINCH to doit
        time.sleep(0.5)
        assert term.run("stty size").strip() == "40 120"
        # Ctrl-C interrupts the guest's command, not revive.
        term.type("sleep 30; echo NOT-INTERRUPTED\r")
        time.sleep(1.5)
        term.type("\x03")
        assert term.run("echo still here", timeout=10).strip() == "still here"
        assert b"NOT-INTERRUPTED" not in term.seen
        assert qemu_processes(str(built.root))
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        term.kill()
    assert b"shell ended; the copy is gone" in term.seen
    assert qemu_processes(str(built.root)) == []
    assert not list((built.artifacts / "work").glob("shell-*"))


def test_the_revive_command_opens_the_same_shell(built):
    revive = Path(sys.executable).with_name("revive")      # setup.sh installs it
    term = Terminal(built, "shell:hello", command=[str(revive), "-c", str(built.config)])
    try:
        term.expect("leave with exit", timeout=120)
        term.expect(PROMPT, timeout=60)
        assert "hello.in" in term.run("ls /mnt/src")
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        term.kill()
    assert qemu_processes(str(built.root)) == []


def test_a_failed_build_keeps_its_state_and_the_shell_resumes_it(built):
    built.config.write_text(built.config.read_text() + FAILS_KEPT)
    proc = built.doit("build:post-mortem", check=False)
    assert proc.returncode != 0
    kept = sorted((built.artifacts / "kept").glob("post-mortem-*"))
    assert len(kept) == 1
    log = built.artifacts / "builds" / "post-mortem" / "log"
    assert (f"revive: build post-mortem: the command exited with code 4; log: {log}; "
            f"its state is kept: doit shell:post-mortem --kept {kept[0].name}") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert built.result("post-mortem")["kept"] == str(kept[0])
    assert qemu_processes(str(built.root)) == []

    term = Terminal(built, "shell:post-mortem", "--kept", kept[0].name)
    try:
        term.expect("leave with exit", timeout=120)
        term.expect(PROMPT, timeout=60)
        assert term.run("cat /tmp/post-mortem.txt").strip() == "left-behind"
        # Its shares were unmounted before the save and are mounted afresh
        # (after test_pipeline they are SMB, whose old session is gone).
        data = (built.root / "other" / "data.txt").read_text().strip()
        assert term.run("cat /mnt/src/data.txt").strip() == data
        # The process the command started in the background still runs.
        assert term.run("kill -0 $(cat /tmp/sleeper.pid) && echo alive").strip() == "alive"
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        term.kill()
    assert qemu_processes(str(built.root)) == []
    # The kept state is not changed by opening it: it opens again.
    term = Terminal(built, "shell", "--kept", str(kept[0]))
    try:
        term.expect("leave with exit", timeout=120)
        term.expect(PROMPT, timeout=60)
        assert term.run("cat /tmp/post-mortem.txt").strip() == "left-behind"
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        term.kill()


def test_kept_states_are_bounded_and_removed_by_doit_clean(built):
    for _ in range(3):
        built.doit("build:post-mortem", check=False)
    kept = sorted((built.artifacts / "kept").glob("post-mortem-*"))
    assert len(kept) == 3
    proc = built.doit("clean", "build:post-mortem")
    for path in kept:
        assert f"removed {path}" in proc.stdout
    assert not list((built.artifacts / "kept").glob("post-mortem-*"))
    assert not (built.artifacts / "builds" / "post-mortem").exists()
    text = built.config.read_text()
    built.config.write_text(text[:text.index("[builds.post-mortem]")])
