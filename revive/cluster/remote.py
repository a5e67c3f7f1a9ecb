"""What a Dask worker runs for one build: fetch the bundle and the sources
by hash into its cache, lay out an artifacts folder of hard links, run the
build through the revive library call, put the log, outputs and QEMU logs
into the store by sha256 and send back only their list. Runs in the worker
process's task thread, so QEMU (started with PDEATHSIG) dies with the
worker. A cancelled task cancels its machine (``Machine.cancel``) through
the worker's plugin."""

import json
import socket
import time
import traceback
import uuid
from pathlib import Path

from ..core.errors import UserError
from ..core.files import remove
from ..machine import KEY
from ..machine.job import BuildRequest, run_build
from . import store as st
from .worker import Cancelled, plugin_of


def build_on_worker(job: dict) -> dict:
    """``job``: name, command, env, outputs, timeout, revive_timeout,
    shares (names), store (URL), bundle (manifest sha256), sources (tarball
    sha256). Returns a dict with ``result`` (or ``error``), ``tarball``
    (out/ and logs/), ``worker``, ``fetch``."""
    from distributed import get_worker
    worker = get_worker()
    key = worker.get_current_task()
    plugin = plugin_of(worker)
    plugin.started(key)
    cache = plugin.cache
    work = plugin.work / f"{job['name']}-{uuid.uuid4().hex[:8]}"
    remove(work)
    work.mkdir(parents=True)
    here = {"name": worker.name, "address": worker.address, "host": socket.gethostname()}
    out, logs = work / "result" / "out", work / "result" / "logs"
    out.mkdir(parents=True)
    logs.mkdir(parents=True)
    result, error, fetch = None, None, None
    try:
        t0 = time.monotonic()
        store = st.Store(job["store"])
        files = st.read_manifest(cache.get_bytes(store, job["bundle"]))
        plugin.check(key)
        # The submitting host sets its deadline by what is fetched.
        lacking = sum(f["size"] for f in files.values() if not cache.path(f["sha256"]).exists())
        worker.log_event(f"revive-{key}", {"phase": "fetch", "bytes": lacking,
                                                "worker": worker.address})
        artifacts = cache.layout(store, files, work / "artifacts")
        _vouch_for_snapshot(artifacts, files)
        plugin.check(key)
        st.unpack(cache.get(store, job["sources"]), work / "sources", "the build's sources")
        fetch = round(time.monotonic() - t0, 3)
        plugin.check(key)
        worker.log_event(f"revive-{key}", {"phase": "build", "worker": worker.address})
        request = BuildRequest(
            name=job["name"], command=job["command"], env=dict(job["env"]),
            outputs=tuple(job["outputs"]), timeout=job["timeout"],
            shares={n: work / "sources" / n for n in job["shares"]},
            revive_timeout=job["revive_timeout"])
        (work / "vm").mkdir()
        result = run_build(artifacts, request, key=artifacts / KEY, out=out,
                           work=work / "vm", logs=logs,
                           started=lambda m: plugin.machine_started(key, m))
    except UserError as err:
        error = str(err)
    except Exception as err:    # a fault of this host (disk full, store gone…): one line back
        error = f"{type(err).__name__}: {err}"
        (logs / "worker-traceback.log").write_text(traceback.format_exc())
    try:
        if plugin.cancelled(key):
            error = "cancelled by the submitting host"
        # The outputs, log and QEMU logs go the way the inputs came: into
        # the store by sha256; only their list travels through Dask.
        files = {}
        try:
            store = st.Store(job["store"])
            files = {part: st.publish_tree(store, work / "result" / part)
                     for part in ("logs", "out")}
        except (UserError, OSError) as err:
            error = error or (f"cannot send the results back through the store "
                              f"{job['store']}: {str(err) or type(err).__name__}")
        return {"result": None if error else result, "error": error, "worker": here,
                "fetch": fetch, "files": files}
    finally:
        plugin.finished(key)
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
