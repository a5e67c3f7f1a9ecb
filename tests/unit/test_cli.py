"""The revive command's own edges: help without a project, and a reader
that leaves a listing early."""

import os
import subprocess
import sys
from pathlib import Path

REVIVE = Path(sys.executable).with_name("revive")


def test_help_needs_no_project(tmp_path):
    proc = subprocess.run([str(REVIVE), "help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: revive")
    assert proc.stderr == "" and list(tmp_path.iterdir()) == []


def test_a_listing_whose_reader_left_ends_without_a_traceback(tmp_path):
    assert subprocess.run([str(REVIVE), "init"], cwd=tmp_path, capture_output=True,
                          timeout=60).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "REVIVE_CONFIG"}
    proc = subprocess.Popen([str(REVIVE), "list"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    proc.stdout.close()                 # the reader leaves before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, -13)     # done, or ended by SIGPIPE as ls is
    assert "Traceback" not in err and err == ""
