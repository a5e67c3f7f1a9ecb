"""Ctrl-C, SIGTERM and a killed parent, for the doit process and its
``-n`` workers: every interrupt becomes one ``Interrupted`` exception raised
inside the running stage, whose cleanup (QEMU reaped, temporary names
removed, partial logs kept) then runs as on any failure.

The main doit process, while it has ``-n`` workers, does not raise: it
forwards the signal to the workers (SIGTERM), which fail their tasks in one
line each and report back, so doit stops the way it does after any failed
task. A worker dies with its parent (PR_SET_PDEATHSIG): a killed doit leaves
no worker holding the project lock (a worker in a stage cleans up first),
and the worker's QEMU dies with it.

No doit here: ``tasks/common.py`` wires this into the action wrapper.
"""

import atexit
import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import time
from typing import Optional

PR_SET_PDEATHSIG = 1
PARENT_DIED = "doit was killed"
# How long a worker told to stop (doit is leaving) may take to clean up
# (reap its QEMU, remove temporary names) before it is killed.
WORKER_GRACE = 30.0


class Interrupted(KeyboardInterrupt):
    """Raised in the running stage on SIGINT/SIGTERM or when doit died.

    A subclass of KeyboardInterrupt, so every ``finally``/``except
    BaseException`` cleanup runs as for Ctrl-C. On its way out, code that
    knows more says where it was (``phase``) and where its log is (``log``).
    """

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why
        self.phase: Optional[str] = None
        self.log: Optional[str] = None


def find(err: "BaseException | None") -> "Interrupted | None":
    """The ``Interrupted`` behind ``err``: itself, or the one during whose
    handling ``err`` was raised (a cleanup that failed because of it)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Interrupted):
            return err
        seen.add(id(err))
        err = err.__context__
    return None


_state = {"main_pid": None, "interrupted": None, "in_action": False}


def interrupted() -> Optional[str]:
    """Why this process was interrupted (e.g. "SIGINT"), or None."""
    return _state["interrupted"]


def _signame(signum: int) -> str:
    return signal.Signals(signum).name


def _on_main_signal(signum, frame) -> None:
    first = _state["interrupted"] is None
    if first:
        _state["interrupted"] = _signame(signum)
    workers = multiprocessing.active_children()
    if workers:
        # -n: the workers run the stages; each fails its task in one line and
        # doit stops after the first failure. A terminal's Ctrl-C reached them
        # already; a SIGTERM sent to doit alone did not. A second signal
        # means doit did not stop: the workers are told doit is leaving.
        _signal_all(workers, signal.SIGTERM if first else signal.SIGUSR1)
        return
    if first:
        raise Interrupted(_state["interrupted"])


def _signal_all(workers, signum: int) -> None:
    for worker in workers:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass


def _reap_workers() -> None:
    """At the main process's exit: workers still alive wait for tasks that
    will never come (doit left its loop on an error, e.g. a write to an
    output pipe nobody reads), and multiprocessing's own exit handler would
    join them forever. Tell them doit is leaving (SIGUSR1: an idle worker
    exits, a busy one cleans up), then kill what remains after the grace."""
    if os.getpid() != _state["main_pid"]:
        return
    workers = multiprocessing.active_children()
    if not workers:
        return
    _signal_all(workers, signal.SIGUSR1)
    deadline = time.monotonic() + WORKER_GRACE
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    _signal_all([w for w in workers if w.is_alive()], signal.SIGKILL)
    for worker in workers:
        worker.join(5)


def _on_worker_signal(signum, frame) -> None:
    first = _state["interrupted"] is None
    if first:
        _state["interrupted"] = _signame(signum)
    if _state["in_action"] and first:
        raise Interrupted(_state["interrupted"])
    # Idle: doit sends "no more work" after the failure it is told of.


def _on_parent_death(signum, frame) -> None:
    # A signal of its own (SIGUSR1), because getppid() may still name doit
    # while its other threads die: the reason must not depend on timing.
    first = _state["interrupted"] is None
    _state["interrupted"] = PARENT_DIED
    if not _state["in_action"]:
        os._exit(1)             # idle: nothing to clean up, nobody to wait for
    if first:
        raise Interrupted(PARENT_DIED)


def _set_pdeathsig(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum)


class _AfterFork:
    """multiprocessing runs registered hooks in each forked child (doit's
    ``-n`` workers) before its target starts."""

    def __call__(self, _obj=None) -> None:
        _state["interrupted"] = None
        signal.signal(signal.SIGINT, _on_worker_signal)
        signal.signal(signal.SIGTERM, _on_worker_signal)
        signal.signal(signal.SIGUSR1, _on_parent_death)
        _set_pdeathsig(signal.SIGUSR1)
        if os.getppid() != _state["main_pid"]:
            os._exit(1)         # doit died before the line above


_after_fork = _AfterFork()


def install() -> None:
    """Called once in the main doit process, before any worker exists."""
    if _state["main_pid"] == os.getpid():
        return
    _state["main_pid"] = os.getpid()
    signal.signal(signal.SIGINT, _on_main_signal)
    signal.signal(signal.SIGTERM, _on_main_signal)
    multiprocessing.util.register_after_fork(_after_fork, _after_fork)
    # Runs before multiprocessing's own exit handler (atexit is last in,
    # first out; multiprocessing.util registered its handler on import).
    atexit.register(_reap_workers)
    sys.excepthook = _excepthook


def in_worker() -> bool:
    return _state["main_pid"] is not None and os.getpid() != _state["main_pid"]


def parent_gone() -> bool:
    """In a worker: doit itself was killed (nobody reads our results)."""
    return in_worker() and _state["interrupted"] == PARENT_DIED


class action_running:
    """Marks a stage action as running: only then does a worker turn a
    signal into ``Interrupted`` (an idle worker just waits to be told to stop)."""

    def __enter__(self):
        _state["in_action"] = True

    def __exit__(self, *exc):
        _state["in_action"] = False


def _excepthook(kind, value, tb) -> None:
    """An interrupt outside any stage (task loading, between tasks): one
    line, not doit's traceback. Anything else keeps Python's report."""
    if issubclass(kind, KeyboardInterrupt):
        why = getattr(value, "why", None) or "SIGINT"
        print(f"revive: interrupted ({why}) between stages; nothing was left running",
              file=sys.stderr, flush=True)
        return
    sys.__excepthook__(kind, value, tb)
