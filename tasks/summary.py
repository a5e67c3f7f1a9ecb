"""After a doit run, one table of every build it touched: result, time,
outputs and log. A doit reporter, so that the table is printed also when a
build failed (a task that depends on the builds would not run then).

Set in dodo.py as ``DOIT_CONFIG["reporter"] = SummaryReporter``; it prints
everything doit's console reporter prints, then the table, and writes the
same builds as a JUnit XML report, ``artifacts/junit.xml``, for CI systems
(docs/ci.md): one test case per build, and one per stage that failed.
"""

import json
import os
import time
from pathlib import Path

from doit.exceptions import UnmetDependency
from doit.reporter import ConsoleReporter
from rich import box
from rich.console import Console
from rich.table import Table

from revive.core.errors import for_people
from revive.core.files import write_atomic
from revive.formats import junit

PREFIX = "build:"
REPORT = "junit.xml"            # in artifacts/


def row(name: str, folder: Path, status: str, since: float, failure: str = "") -> dict:
    """One build's line; ``since``: when this run started the build (a
    result.json older than that is a previous run's and is not shown as
    this run's result)."""
    result_file = folder / "result.json"
    result = None
    if result_file.is_file() and (status == "up to date"
                                  or result_file.stat().st_mtime >= since):
        try:
            result = json.loads(result_file.read_text())
        except ValueError:
            result = None
    if result is None:
        return {"build": name, "result": status if status == "up to date" else "failed",
                "seconds": None, "outputs": "", "log": failure or "(no result)"}
    if result.get("timed_out"):
        verdict = "timed out"
    elif result.get("exit_code") == 0 and not result.get("missing_outputs"):
        verdict = "ok"
    elif result.get("exit_code") == 0:
        verdict = "outputs missing"
    elif result.get("exit_code") is None:
        verdict = "VM died" if result.get("vm_died") else "failed"
    else:
        verdict = f"exit {result.get('exit_code')}"
    if status == "up to date":
        verdict += " (up to date)"
    outputs = ", ".join(result.get("outputs", []))
    if result.get("missing_outputs"):
        outputs += (" " if outputs else "") + "missing: " + ", ".join(result["missing_outputs"])
    return {"build": name, "result": verdict,
            "seconds": result.get("timings", {}).get("total"),
            "outputs": outputs, "log": _short(folder / "log")}


def _short(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def render(rows: "list[dict]", stream, width: "int | None" = None) -> None:
    table = Table(title="builds", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("build", "result", "time", "outputs", "log"):
        table.add_column(column, overflow="fold")
    for r in rows:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f} s"
        table.add_row(r["build"], r["result"], seconds, r["outputs"], r["log"])
    console = Console(file=stream, highlight=False, markup=False,
                      width=width or (None if stream.isatty() else 200))
    console.print(table)


class SummaryReporter(ConsoleReporter):
    desc = "console output, then a table of the builds"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self._builds: "dict[str, dict]" = {}
        self._stages: "dict[str, dict]" = {}        # stages that failed
        self._started: "dict[str, float]" = {}
        self._report: "Path | None" = None

    def initialize(self, tasks, selected_tasks):
        super().initialize(tasks, selected_tasks)
        # A build's target is artifacts/builds/NAME/result.json; a project
        # without builds gets no report.
        for task in tasks.values():
            if task.name.startswith(PREFIX) and task.targets:
                self._report = Path(task.targets[0]).absolute().parents[2] / REPORT
                break

    def _seen(self, task, status: str, failure: str = "") -> None:
        if not task.name.startswith(PREFIX) or not task.targets:
            return
        entry = self._builds.setdefault(task.name, {"since": time.time()})
        entry.update(status=status, failure=failure, seconds=self._seconds(task),
                     folder=Path(task.targets[0]).parent)

    def execute_task(self, task):
        super().execute_task(task)
        self._started[task.name] = time.time()
        if task.name.startswith(PREFIX):
            # Coarse file times: a second's slack either way.
            self._builds[task.name] = {"since": time.time() - 1}

    def add_success(self, task):
        super().add_success(task)
        self._seen(task, "ran")

    def add_failure(self, task, fail):
        super().add_failure(task, fail)
        lines = [l for l in fail.get_msg().splitlines() if l.strip()]
        ours = [l for l in lines if l.startswith("revive:")]
        # revive's one line; else doit's own first (an unmet dependency).
        line = ours[0] if ours else for_people(lines[0] if lines else fail.get_name())
        self._seen(task, "failed", line)
        # A stage that failed is a case of its own; one that did not run
        # because another failed is not.
        if not task.name.startswith(PREFIX) and not isinstance(fail, UnmetDependency):
            self._stages[task.name] = {"failure": line, "seconds": self._seconds(task)}

    def _seconds(self, task) -> float:
        """How long this run spent on the task (0 if it never started)."""
        started = self._started.get(task.name)
        return 0.0 if started is None else time.time() - started

    def skip_uptodate(self, task):
        super().skip_uptodate(task)
        self._seen(task, "up to date")

    def complete_run(self):
        super().complete_run()
        builds = {name[len(PREFIX):]: e for name, e in sorted(self._builds.items())
                  if "folder" in e}
        if builds:
            rows = [row(name, e["folder"], e["status"], e["since"], e["failure"])
                    for name, e in builds.items()]
            self.write("\n")
            render(rows, self.outstream)
            self._write_report(builds, rows)
        elif self._stages:
            self._write_report({}, [])

    def _write_report(self, builds: dict, rows: "list[dict]") -> None:
        """artifacts/junit.xml: this run's builds (those doit found up to
        date with their last result), and the stages that failed."""
        if self._report is None:
            return
        cases = [junit.Case(name=stage, classname="revive.stage", seconds=e["seconds"],
                            failure=e["failure"])
                 for stage, e in sorted(self._stages.items())]
        for (name, e), r in zip(builds.items(), rows):
            # The build's own timing; failed before its result: this run's.
            seconds = e["seconds"] if r["seconds"] is None else r["seconds"]
            failure = None
            if e["status"] == "failed":
                failure = e["failure"] or for_people(f"build {name}: {r['result']}")
            log = e["folder"] / "log"
            cases.append(junit.Case(name=name, classname="revive.build", seconds=seconds,
                                    failure=failure, log=log if log.is_file() else None))
        try:
            write_atomic(self._report, junit.report(cases))
        except OSError as err:
            self.write(for_people(f"the JUnit report {self._report} was not written: "
                                  f"{err.strerror}") + "\n")
