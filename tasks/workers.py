"""doit's ``-n`` runner, watching its workers.

doit's multiprocessing runner (doit/runner.py ``MRunner``) learns that a
task ended only from the result its worker puts on a queue. A worker killed
outright (SIGKILL: what the OOM killer does) sends none, and doit waited on
that queue forever, holding the project lock. Here a thread of the main doit
process waits on every worker's exit and on a pipe where each worker names
the task it starts. A worker that dies while running a task fails that task
in one line (naming the build and its partial log), so doit's own loop goes
on as after any failed task: the other builds finish, the summary table
lists the lost one as failed, and doit ends. A worker that dies idle may
have held the job queue's lock, so doit stops in one line.

``tasks/dodo.py`` installs it in place of doit's ``MRunner``.
"""

import os
import signal
import threading
import time
from multiprocessing.connection import wait

from doit import cmd_run
from doit.exceptions import InvalidTask, TaskFailed
from doit.runner import MRunner

from revive.core import interrupts
from revive.core.errors import for_people
from revive.core.files import sweep_stale

_LOST = "revive-lost-worker"
# How long the watcher waits for a worker's exit status another thread reaped.
EXIT_STATUS_WAIT = 5.0


class WatchedRunner(MRunner):

    _started = None             # the write end of the "task started" pipe

    def _run_start_processes(self, job_q, result_q):
        read, self._started = os.pipe()
        try:
            procs = super()._run_start_processes(job_q, result_q)
        finally:
            # The workers hold their copies; the pipe's end-of-file then
            # means that every worker is gone.
            os.close(self._started)
            self._started = None
        watcher = _Watcher(procs, read, result_q, self)
        threading.Thread(target=watcher.run, name="revive-worker-watch", daemon=True).start()
        return procs

    def execute_task(self, task):
        # In a worker: tell the watcher which task this process runs. One
        # write under PIPE_BUF is atomic among the workers.
        if self._started is not None:
            try:
                os.write(self._started, f"{os.getpid()} {task.name}\n".encode())
            except OSError:
                pass
        return super().execute_task(task)


class _Watcher:
    def __init__(self, procs, read: int, result_q, runner: WatchedRunner):
        self.procs = {p.sentinel: p for p in procs}
        self.read = read
        self.running: "dict[int, str]" = {}     # worker pid -> the task it last started
        self.finished: "set[str]" = set()
        self.runner = runner
        self.result_q = result_q
        self._get = result_q.get
        self._empty = result_q.empty
        self._next = None               # a result read ahead by empty()
        # The runner's loop reads results through here, in doit's main thread.
        result_q.get = self.get
        result_q.empty = self.empty

    def run(self) -> None:
        pending = b""
        reader = self.read
        while self.procs:
            ready = wait([*self.procs, *([reader] if reader is not None else [])])
            if reader in ready:
                chunk = os.read(reader, 4096)
                if not chunk:
                    os.close(reader)
                    reader = None
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    pid, name = line.decode().split(" ", 1)
                    self.running[int(pid)] = name
            for sentinel in [s for s in ready if s in self.procs]:
                proc = self.procs.pop(sentinel)
                code = _exit_code(proc)
                if code != 0:
                    # After the pipe's last line from that worker: drain it.
                    self.result_q.put({_LOST: (proc.pid, code, self.running.get(proc.pid))})
        if reader is not None:
            os.close(reader)

    def get(self, *args, **kwargs):
        """The next result for doit's loop; a lost worker's task becomes a
        failed result (unless its result came first: the worker died after)."""
        while True:
            if self._next is not None:
                result, self._next = self._next, None
            else:
                result = self._get(*args, **kwargs)
            result = self._translate(result)
            if result is not None:
                return result

    def empty(self) -> bool:
        """doit's last loop reads results ``while not result_q.empty()``
        (after joining its workers): a lost worker the interrupt explains
        is no result, and ``get`` must not wait for one that never comes."""
        while self._next is None:
            if self._empty():
                return True
            self._next = self._translate(self._get())
        return False

    def _translate(self, result: dict) -> "dict | None":
        """A result as doit's loop should see it; None for a lost worker
        whose end says nothing (told to stop, or its task already done)."""
        if _LOST not in result:
            if "reporter" not in result and "name" in result:
                self.finished.add(result["name"])
            return result
        pid, code, name = result[_LOST]
        if name is None or name in self.finished:
            if interrupts.interrupted():
                return None         # told to stop: its end is the interrupt's
            return {"exit": InvalidTask, "exception": for_people(
                f"a doit worker (PID {pid}) died ({_how(code)}) between tasks; doit "
                "stops: rerun it")}
        self.finished.add(name)
        return self._failed(name, pid, code)

    def _failed(self, name: str, pid: int, code: int) -> dict:
        task = self.runner.tasks[name]
        artifacts = _project()
        log = ""
        if artifacts is not None:
            # What the worker's cleanup would have removed (its build's
            # temporary folders; its QEMU died with it).
            sweep_stale(artifacts, only_pid=pid)
            if name.startswith("build:"):
                kept = artifacts / "logs" / f"build-{name.split(':', 1)[1]}.log"
                if kept.exists():
                    log = f"; partial log kept: {kept}"
        message = for_people(f"{name}: its doit worker (PID {pid}) was killed ({_how(code)}; "
                             f"the OOM killer does this when memory runs out); its QEMU "
                             f"stopped with it and its temporary files were removed{log}")
        # Whatever doit's -c says: with a worker short, doit stops
        # scheduling (each further result decrements its count of workers).
        self.runner._stop_running = True
        return {"name": name, "failure": TaskFailed(message),
                "task": task.pickle_safe_dict(),
                "out": [None] * len(task.actions), "err": [None] * len(task.actions)}


def _exit_code(proc) -> "int | None":
    """A worker's exit status once its sentinel says it ended. Another
    thread may reap it first (doit's own join; ``active_children()`` in the
    signal handler): this thread's ``waitpid`` then fails and ``exitcode``
    reads None until that thread stores the status, a moment later. None
    only if nobody stored it within EXIT_STATUS_WAIT."""
    proc.join()
    deadline = time.monotonic() + EXIT_STATUS_WAIT
    while proc.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.exitcode


def _how(code: "int | None") -> str:
    if code is None:
        return "status unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _project():
    from .common import _locks
    from pathlib import Path
    return Path(next(iter(_locks))) if _locks else None


def install() -> None:
    """Every ``doit -n N`` of revive's tasks runs on the watched runner."""
    cmd_run.MRunner = WatchedRunner
