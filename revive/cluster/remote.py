"""What a Dask worker runs for one build: fetch the bundle and the sources
by hash into its cache, lay out an artifacts folder of hard links, run the
build through the revive library call, and send back the result, the log
and the outputs as one tarball. Runs in the worker process's task thread,
so QEMU (started with PDEATHSIG) dies with the worker. A cancelled task
cancels its machine (``Machine.cancel``)."""

import json
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path

from ..core.errors import UserError
from ..core.files import remove
from ..machine import KEY
from ..machine.job import BuildRequest, run_build
from . import store as st

ENV_CACHE = "REVIVE_WORKER_CACHE"
ENV_CACHE_SIZE = "REVIVE_WORKER_CACHE_SIZE"
ENV_WORK = "REVIVE_WORKER_WORK"

_caches: dict = {}


def worker_cache() -> st.Cache:
    folder = os.environ.get(ENV_CACHE)
    if not folder:
        raise UserError("this Dask worker was not started for revive (no "
                        f"{ENV_CACHE}); start it with python -m revive.cluster.worker")
    if folder not in _caches:
        _caches[folder] = st.Cache(Path(folder), st.parse_size(os.environ.get(ENV_CACHE_SIZE, "20G")))
    return _caches[folder]


def build_on_worker(job: dict) -> dict:
    """``job``: name, command, env, outputs, timeout, revive_timeout,
    shares (names), store (URL), bundle (manifest sha256), sources (tarball
    sha256). Returns a dict with ``result`` (or ``error``), ``tarball``
    (out/ and logs/), ``worker``, ``fetch``."""
    from distributed import get_worker
    worker = get_worker()
    key = worker.get_current_task()
    cache = worker_cache()
    work = Path(os.environ.get(ENV_WORK) or cache.folder / "work") / \
        f"{job['name']}-{uuid.uuid4().hex[:8]}"
    remove(work)
    work.mkdir(parents=True)
    here = {"name": worker.name, "address": worker.address, "host": socket.gethostname()}
    out, logs = work / "result" / "out", work / "result" / "logs"
    out.mkdir(parents=True)
    logs.mkdir(parents=True)
    stop = threading.Event()
    cancel = _Cancel()
    watcher = threading.Thread(target=_watch_cancel, args=(worker, key, cancel, stop),
                               daemon=True)
    watcher.start()
    result, error, fetch = None, None, None
    try:
        t0 = time.monotonic()
        store = st.Store(job["store"])
        files = st.read_manifest(cache.get_bytes(store, job["bundle"]))
        artifacts = cache.layout(store, files, work / "artifacts")
        _vouch_for_snapshot(artifacts, files)
        st.unpack(cache.get(store, job["sources"]), work / "sources", "the build's sources")
        fetch = round(time.monotonic() - t0, 3)
        request = BuildRequest(
            name=job["name"], command=job["command"], env=dict(job["env"]),
            outputs=tuple(job["outputs"]), timeout=job["timeout"],
            shares={n: work / "sources" / n for n in job["shares"]},
            revive_timeout=job["revive_timeout"])
        (work / "vm").mkdir()
        result = run_build(artifacts, request, key=artifacts / KEY, out=out,
                           work=work / "vm", logs=logs, started=cancel.attach)
    except UserError as err:
        error = str(err)
    except Exception as err:    # a fault of this host (disk full, store gone…): one line back
        error = f"{type(err).__name__}: {err}"
        (logs / "worker-traceback.log").write_text(traceback.format_exc())
    finally:
        stop.set()
    try:
        if cancel.why:
            error = cancel.why
        return {"result": None if error else result, "error": error, "worker": here,
                "fetch": fetch, "tarball": st.pack_folder(work / "result")}
    finally:
        remove(work)


def _vouch_for_snapshot(artifacts: Path, files: "dict[str, dict]") -> None:
    """The cache has just verified every object's sha256 (by inode, size and
    mtime); say so in the snapshot's ``.verified`` so that revive does not
    hash the multi-GB RAM file and disk of every build again."""
    verified = {}
    for rel, f in files.items():
        if rel.startswith("snapshot/") and rel != "snapshot/meta.json":
            s = (artifacts / rel).stat()
            verified[rel.split("/", 1)[1]] = [f["sha256"], s.st_size, s.st_mtime_ns, s.st_ino]
    (artifacts / "snapshot" / ".verified").write_text(json.dumps(verified))


class _Cancel:
    """The build's machine, to cancel from the watcher's thread; one made
    after the cancellation never starts."""

    def __init__(self):
        self.why: "str | None" = None
        self.machine = None
        self._lock = threading.Lock()

    def attach(self, machine) -> None:
        with self._lock:
            self.machine = machine
            if self.why:
                machine.cancel(self.why)

    def __call__(self, why: str) -> None:
        with self._lock:
            self.why = why
            if self.machine is not None:
                self.machine.cancel(why)


def _watch_cancel(worker, key, cancel: _Cancel, stop: threading.Event) -> None:
    """A running task is not interrupted when its client cancels it; this
    thread notices the cancellation and cancels the build's machine, which
    ends the build at once."""
    while not stop.wait(0.5):
        state = getattr(worker.state.tasks.get(key), "state", None)
        if state in (None, "cancelled", "released", "forgotten"):
            cancel("cancelled by the submitting host")
            return
