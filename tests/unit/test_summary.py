"""The table of builds printed after a doit run, through doit's real runner
and reporter: a passing and a failing build (whose results are written as
the build stage writes them), and a build that failed before any result."""

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
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


def junit_cases(root: Path) -> "dict[str, ET.Element]":
    tree = ET.parse(root / "artifacts" / "junit.xml")      # well-formed, or this raises
    suite = tree.getroot().find("testsuite")
    return {case.get("name"): case for case in suite.iter("testcase")}


def test_the_junit_report_has_one_case_per_build(tmp_path):
    (tmp_path / "dodo.py").write_text(DODO)
    proc = run_doit(tmp_path, "--continue", "build")
    assert proc.returncode != 0
    suite = ET.parse(tmp_path / "artifacts" / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = junit_cases(tmp_path)
    assert set(cases) == {"hello", "fails", "broken"}
    hello, fails, broken = cases["hello"], cases["fails"], cases["broken"]
    assert hello.get("classname") == "revive.build"
    assert float(hello.get("time")) == 2.25                # the build's own timing
    assert hello.find("failure") is None
    assert hello.findtext("system-out") == "building\n"    # its log
    failure = fails.find("failure")
    log = Path("artifacts/builds/fails/log")       # as the stand-in build names it
    assert failure.get("message") == \
        f"revive: build fails: the command exited with code 3; log: {log}"
    assert fails.findtext("system-out") == "building\n"
    assert broken.find("failure").get("message") == \
        "revive: build:broken: SSH to the guest: no answer within 60 s"
    assert broken.find("system-out") is None               # it wrote no log
    assert 0 <= float(broken.get("time")) < 30
    # Written whole: no temporary file beside it.
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["builds", "junit.xml"]


def test_the_junit_report_carries_a_huge_or_binary_log_as_its_tail(tmp_path):
    from revive.formats import junit
    big = (junit.LOG_TAIL // 10 + 1000) * "0123456789" + "\x1b[31mred\x00\n" + "the end\n"
    dodo = DODO.replace('(out / "log").write_text("building\\n")',
                        f'(out / "log").write_text({big!r})')
    assert dodo != DODO
    (tmp_path / "dodo.py").write_text(dodo)
    run_doit(tmp_path, "build:hello")
    out = junit_cases(tmp_path)["hello"].findtext("system-out")
    log = Path("artifacts/builds/hello/log")
    assert out.startswith(f"revive: the first {len(big) - junit.LOG_TAIL} bytes of {log} "
                          "are left out\n")
    assert out.endswith("\\x1b[31mred\\x00\nthe end\n")
    assert len(out) < junit.LOG_TAIL + 200


def test_the_junit_report_names_a_failed_stage_and_keeps_up_to_date_builds(tmp_path):
    dodo = DODO + textwrap.dedent('''
        def task_snapshot():
            return {"actions": [lambda: TaskFailed("revive: snapshot: no SSH within 3 m")]}
    ''')
    (tmp_path / "dodo.py").write_text(dodo)
    run_doit(tmp_path, "build:hello")
    proc = run_doit(tmp_path, "--continue", "build:hello", "snapshot")
    assert proc.returncode != 0
    cases = junit_cases(tmp_path)
    assert cases["hello"].find("failure") is None          # up to date: its last result
    assert cases["snapshot"].get("classname") == "revive.stage"
    assert cases["snapshot"].find("failure").get("message") == \
        "revive: snapshot: no SSH within 3 m"
