"""The table of builds printed after a doit run, through doit's real runner
and reporter: a passing and a failing build (whose results are written as
the build stage writes them), and a build that failed before any result."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

DODO = textwrap.dedent('''
    import json
    from pathlib import Path
    from doit.exceptions import TaskFailed
    from tasks.summary import SummaryReporter

    DOIT_CONFIG = {"reporter": SummaryReporter, "verbosity": 2,
                   "dep_file": "doit.json", "backend": "json"}
    BUILDS = Path("artifacts/builds")

    def _build(name, code):
        out = BUILDS / name
        out.mkdir(parents=True, exist_ok=True)
        if code is None:
            return TaskFailed("revive: build:%s: SSH to the guest: no answer within 60 s" % name)
        (out / "log").write_text("building\\n")
        result = {"build": name, "exit_code": code, "timed_out": False,
                  "outputs": ["hello", "hello.txt"] if code == 0 else ["partial.txt"],
                  "missing_outputs": [] if code == 0 else ["report.xml"],
                  "timings": {"revive": 0.3, "command": 1.2, "total": 2.25}}
        (out / "result.json").write_text(json.dumps(result))
        if code:
            return TaskFailed("revive: build %s: the command exited with code %d; log: %s"
                              % (name, code, out / "log"))

    def task_build():
        for name, code in (("hello", 0), ("fails", 3), ("broken", None)):
            yield {"name": name, "actions": [(_build, [name, code])],
                   "targets": [BUILDS / name / "result.json"], "uptodate": [name == "hello"]}
''')


def run_doit(root: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


def table_rows(stdout: str) -> "dict[str, list[str]]":
    rows = {}
    for line in stdout[stdout.index("\nbuilds"):].splitlines():
        cells = line.split()
        if cells and cells[0] in ("hello", "fails", "broken"):
            rows[cells[0]] = line
    return rows


def test_the_table_shows_passing_and_failing_builds(tmp_path):
    (tmp_path / "dodo.py").write_text(DODO)
    # A stale result from an earlier run must not pass for this run's.
    stale = tmp_path / "artifacts" / "builds" / "broken"
    stale.mkdir(parents=True)
    (stale / "result.json").write_text(json.dumps({"exit_code": 0}))
    os.utime(stale / "result.json", (1, 1))
    proc = run_doit(tmp_path, "--continue", "build")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    assert rows["hello"].split()[:4] == ["hello", "ok", "2.2", "s"] or \
        rows["hello"].split()[:4] == ["hello", "ok", "2.3", "s"]
    assert "hello, hello.txt" in rows["hello"]
    assert "artifacts/builds/hello/log" in rows["hello"]
    assert rows["fails"].split()[:3] == ["fails", "exit", "3"]
    assert "partial.txt missing: report.xml" in rows["fails"]
    assert "artifacts/builds/fails/log" in rows["fails"]
    assert rows["broken"].split()[:2] == ["broken", "failed"]
    assert "SSH to the guest: no answer within 60 s" in rows["broken"]
    # The table comes after doit's own lines.
    assert proc.stdout.index(".  build:broken") < proc.stdout.index("\nbuilds")


def test_up_to_date_builds_are_listed_with_their_last_result(tmp_path):
    (tmp_path / "dodo.py").write_text(DODO)
    run_doit(tmp_path, "build:hello")
    proc = run_doit(tmp_path, "build:hello")
    assert proc.returncode == 0
    assert "-- build:hello" in proc.stdout
    assert "ok (up to date)" in table_rows(proc.stdout)["hello"]


def test_no_table_without_builds(tmp_path):
    (tmp_path / "dodo.py").write_text(DODO + "\ndef task_other():\n    return {'actions': None}\n")
    proc = run_doit(tmp_path, "other")
    assert proc.returncode == 0 and "\nbuilds" not in proc.stdout
