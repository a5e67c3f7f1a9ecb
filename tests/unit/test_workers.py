"""The watcher of doit's -n workers (tasks/workers.py) with real processes
and a real multiprocessing queue: what doit's loops read from it."""

import multiprocessing
import threading
import time

import pytest

from revive.core import interrupts
from tasks import workers


class _Runner:
    tasks: dict = {}
    _stop_running = False


def _exit(code: int) -> None:
    raise SystemExit(code)


@pytest.fixture
def queue():
    q = multiprocessing.Queue()
    yield q
    q.close()
    q.join_thread()


def _watcher(queue, procs=()):
    read, write = multiprocessing.Pipe(duplex=False)
    watcher = workers._Watcher(list(procs), read.fileno(), queue, _Runner())
    return watcher, (read, write)


def test_a_lost_worker_the_interrupt_explains_is_no_result(queue, monkeypatch):
    """doit reads `while not result_q.empty(): result_q.get()` after
    joining its workers: a lost worker whose task had ended, after a
    Ctrl-C, must leave the queue empty, not make `get` wait for ever
    (that wait was a hang of `doit -n 2` on Ctrl-C)."""
    watcher, _pipe = _watcher(queue)
    queue.put({"name": "build:a", "task": {}, "out": [], "err": []})
    assert watcher.get()["name"] == "build:a"
    monkeypatch.setitem(interrupts._state, "interrupted", "SIGINT")
    queue.put({workers._LOST: (1234, 1, "build:a")})
    queue.put({workers._LOST: (1235, None, None)})
    time.sleep(0.2)                          # the queue's feeder thread
    assert queue.empty() is True
    # A real result behind a lost worker is still read, once.
    queue.put({workers._LOST: (1236, -9, None)})
    queue.put({"name": "teardown", "reporter": "teardown_task"})
    time.sleep(0.2)
    assert queue.empty() is False
    assert queue.get(timeout=1) == {"name": "teardown", "reporter": "teardown_task"}
    assert queue.empty() is True


def test_a_lost_worker_without_an_interrupt_stops_doit_in_one_line(queue):
    watcher, _pipe = _watcher(queue)
    queue.put({workers._LOST: (1234, -9, None)})
    result = watcher.get()
    assert result["exit"] is not None
    assert "a doit worker (PID 1234) died (signal SIGKILL) between tasks" in result["exception"]


class _ReapedElsewhere:
    """A worker's Popen while another thread has reaped it (its waitpid
    won) but not yet stored the status: poll() reads None for a moment."""

    def __init__(self, popen, delay: float):
        self.popen, self.until = popen, time.monotonic() + delay

    def poll(self, flag=0):
        if time.monotonic() < self.until:
            return None
        return self.popen.poll(flag)

    def wait(self, timeout=None):
        return self.poll()

    def __getattr__(self, name):
        return getattr(self.popen, name)


def test_a_worker_reaped_by_another_thread_still_has_its_exit_status():
    """``multiprocessing.active_children()`` (doit's signal handler) or
    doit's own join may reap a worker while the watcher does: the
    watcher's waitpid fails and exitcode reads None until the other thread
    stores the status. That None read as a lost worker."""
    for code in (0, 3):
        proc = multiprocessing.Process(target=_exit, args=(code,))
        proc.start()
        proc.join(10)
        proc._popen = _ReapedElsewhere(proc._popen, 0.2)
        assert proc.exitcode is None
        assert workers._exit_code(proc) == code
