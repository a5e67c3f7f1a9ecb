"""After a doit run, one table of every build it touched: result, time,
outputs and log. A doit reporter, so that the table is printed also when a
build failed (a task that depends on the builds would not run then).

Set in dodo.py as ``DOIT_CONFIG["reporter"] = SummaryReporter``; it prints
everything doit's console reporter prints, then the table.
"""

import json
import os
import time
from pathlib import Path

from doit.reporter import ConsoleReporter
from rich import box
from rich.console import Console
from rich.table import Table

PREFIX = "build:"


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

    def _seen(self, task, status: str, failure: str = "") -> None:
        if not task.name.startswith(PREFIX) or not task.targets:
            return
        entry = self._builds.setdefault(task.name, {"since": time.time()})
        entry.update(status=status, failure=failure,
                     folder=Path(task.targets[0]).parent)

    def execute_task(self, task):
        super().execute_task(task)
        if task.name.startswith(PREFIX):
            # Coarse file times: a second's slack either way.
            self._builds[task.name] = {"since": time.time() - 1}

    def add_success(self, task):
        super().add_success(task)
        self._seen(task, "ran")

    def add_failure(self, task, fail):
        super().add_failure(task, fail)
        lines = [l for l in fail.get_msg().splitlines() if l.startswith("revive:")]
        self._seen(task, "failed", lines[0] if lines else fail.get_name())

    def skip_uptodate(self, task):
        super().skip_uptodate(task)
        self._seen(task, "up to date")

    def complete_run(self):
        super().complete_run()
        if not self._builds:
            return
        rows = [row(name[len(PREFIX):], e["folder"], e["status"], e["since"], e["failure"])
                for name, e in sorted(self._builds.items()) if "folder" in e]
        self.write("\n")
        render(rows, self.outstream)
