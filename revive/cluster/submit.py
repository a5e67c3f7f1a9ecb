"""The submitting side: publish what the store lacks, place the build on a
worker that can revive its snapshot, wait, and lay out
artifacts/builds/NAME/ exactly as a local build does (plus ``worker`` in
result.json). One Dask client per process (each of doit's -n processes is
a client); Ctrl-C cancels the build on the cluster."""

import asyncio
import concurrent.futures
import fcntl
import json
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from ..core.errors import UserError
from ..core.files import atomic_path, remove
from ..machine import revive_files
from ..qemu import saved
from . import certs
from . import resources as res
from . import store as st
from . import thunk

CONNECT_TIMEOUT = 15.0      # seconds to reach the scheduler
FETCH_RATE = 2 << 20         # bytes/s: the slowest fetch a placed build is allowed
SLACK = 120.0                # seconds for a worker to start, prepare, collect, send back
SAY_AFTER = 10.0             # a build not placed by then says what it waits for
POLL = 0.3
LOOK = 2.0                   # seconds between looks at the scheduler's state
CLIENT_LOG = "cluster-client.log"   # artifacts/logs: Dask's own messages
CLIENT_LOG_MAX = 1 << 20             # bytes; past it the next client empties the log

_clients: dict = {}


def client_for(cluster, log: Path):
    """This process's client of ``cluster`` (config's Cluster); an
    unreachable scheduler is one line. Dask's own messages go to ``log``
    (artifacts/logs/CLIENT_LOG), not the terminal."""
    scheduler = cluster.scheduler
    if scheduler in _clients:
        return _clients[scheduler]
    from distributed import Client
    security = None
    if cluster.certs is not None:
        security = certs.security(cluster.certs, "client", "config.toml: [cluster] certs")
    libraries_log(log)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False,
                        security=security)
    except (OSError, TimeoutError) as err:
        tls = " (or it refused [cluster] certs: another cluster's?)" if security else ""
        raise UserError(f"config.toml: [cluster] scheduler: cannot reach {scheduler} within "
                        f"{CONNECT_TIMEOUT:.0f} s ({type(err).__name__}){tls}; start `dask "
                        "scheduler` there, fix the address, or set REVIVE_SCHEDULER=local "
                        "to build on this host") from None
    _clients[scheduler] = client
    return client


def libraries_log(log: Path) -> None:
    """Send what Dask, tornado and asyncio log in this process to ``log``
    (appended to, emptied once past CLIENT_LOG_MAX), and nothing to the
    terminal. The client logs its retries
    and a lost scheduler at length, tracebacks included, and not only
    through the "distributed" logger: distributed.client and
    tornado.application keep levels of their own. revive's one line says
    what happened and names this file. Call it after ``import
    distributed``, which sets up handlers of its own."""
    import logging
    path = os.path.abspath(log)
    tops = ("distributed", "tornado", "asyncio")
    if any(getattr(h, "baseFilename", None) == path for h in logging.getLogger(tops[0]).handlers):
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Appended to (each of doit's -n processes writes it), kept small.
        if log.stat().st_size > CLIENT_LOG_MAX:
            os.truncate(log, 0)
    except FileNotFoundError:
        pass
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    # distributed gives some of its loggers (distributed.client,
    # tornado.application) stderr handlers of their own.
    names = [n for n in list(logging.root.manager.loggerDict)
             if n in tops or n.startswith(tuple(f"{t}." for t in tops))]
    for name in sorted(set(names) | set(tops)):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            if isinstance(old, logging.FileHandler):
                old.close()
        logger.propagate = name not in tops
        if name in tops:
            logger.addHandler(handler)
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _workers(client) -> dict:
    return client.scheduler_info(n_workers=-1).get("workers", {})


def fitting(workers: dict, needs: "dict[str, int]") -> "list[dict]":
    """The workers that offer everything ``needs`` (busy or not)."""
    return [w for w in workers.values()
            if all(w.get("resources", {}).get(k, 0) >= v for k, v in needs.items())]


def offers(workers: dict) -> str:
    return "; ".join(f"{w.get('name')}: {res.describe(w.get('resources', {}))}"
                     for w in workers.values()) or "no workers connected"


def announce_dashboard(client, cluster, work: Path) -> None:
    """The dashboard address (and the warning of an insecure cluster), once
    per doit run (doit's -n processes share the parent's pid as the run's id)."""
    run = os.getppid() if multiprocessing.parent_process() is not None else os.getpid()
    marker = work / "cluster" / f"announced-{run}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    for old in marker.parent.glob("announced-*"):
        if old != marker and time.time() - old.stat().st_mtime > 86400:
            old.unlink(missing_ok=True)
    link = client.dashboard_link if "dashboard" in \
        client.scheduler_info(n_workers=0).get("services", {}) else "none (install bokeh on the scheduler)"
    _say(f"cluster {client.scheduler.address}: dashboard {link}")
    if cluster.insecure:
        _say(f"warning: [cluster] insecure = true: anyone who reaches {cluster.scheduler} "
             "can run code on its workers")


def _say(message: str) -> None:
    print(f"revive: {message}", flush=True)


def publish(cluster, paths, request, meta: dict) -> "tuple[st.Store, str, str, int]":
    """(store, bundle sha256, sources sha256, bytes uploaded)."""
    store = st.Store(cluster.store)
    lock = paths.work / "cluster" / "publish.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        # doit's -n processes publish the same bundle: one uploads, the
        # others wait and then find every object in the store.
        with open(lock, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            bundle, sent = st.publish_bundle(store, paths.artifacts,
                                             revive_files(paths.artifacts, meta))
        tarball = paths.work / "cluster" / f"sources-{request.name}-{os.getpid()}.tar.gz"
        try:
            sources = st.pack_sources(request.shares, tarball)
            if store.put_file(tarball, sources):
                sent += tarball.stat().st_size
        finally:
            remove(tarball)
    except OSError as err:
        raise UserError(f"config.toml: [cluster] store: cannot write {cluster.store}: "
                        f"{err}") from None
    return store, bundle, sources, sent


def run_remote_build(cluster, paths, request) -> "tuple[Path, dict]":
    """Run one build (a revive.BuildRequest) on the cluster; return
    (artifacts/builds/NAME, result)."""
    meta = saved.read_meta(paths.snapshot)
    needs = res.for_snapshot(meta)
    log = paths.logs / CLIENT_LOG
    client = client_for(cluster, log)
    announce_dashboard(client, cluster, paths.work)
    t0 = time.monotonic()
    store, bundle, sources, sent = publish(cluster, paths, request, meta)
    published = round(time.monotonic() - t0, 3)
    job = {"name": request.name, "command": request.command, "env": dict(request.env),
           "outputs": list(request.outputs), "timeout": request.timeout,
           "revive_timeout": request.revive_timeout, "shares": sorted(request.shares),
           "store": cluster.store, "bundle": bundle, "sources": sources}
    future = client.submit(thunk.task(), job, resources=needs, pure=False,
                           key=f"revive-build-{request.name}-{uuid.uuid4().hex[:8]}")
    try:
        answer = _wait(client, future, request, cluster, needs, log)
    except BaseException:
        future.cancel()     # Ctrl-C, a deadline, a lost scheduler: stop it there too
        raise
    finally:
        future.release()
    return _lay_out(paths, request, cluster, answer, published, sent)


class _Watch:
    """What the submitting side knows of one build on the cluster: where it
    is placed, what its worker reports (``revive-KEY`` events: the bytes it
    fetches, then the build), and so its deadline."""

    def __init__(self, client, future, build, cluster, needs):
        self.client, self.future, self.build, self.cluster = client, future, build, cluster
        self.needs = needs
        self.placed = None           # the address of the worker it last ran on
        self.placed_name = None      # "name (address)" of that worker
        self.deadline = None         # while placed
        self.state, self.since, self.said = "new", time.monotonic(), False
        self.seen_events = 0

    def say(self, message: str) -> None:
        _say(f"build {self.build.name}: {message}")

    def _enter(self, state: str, now: float) -> None:
        if state != self.state:
            self.state, self.since, self.said = state, now, False

    def look(self) -> None:
        now = time.monotonic()
        where = _processing_on(self.client, self.future.key)
        if where:
            if where != self.placed or self.state != "placed":
                name = _worker_name(self.client, where)
                self.say(f"placed on {name}" + (" (again)" if self.placed else ""))
                self.placed, self.placed_name, self.seen_events = where, name, 0
                # Until the worker says what it fetches: time to start the task.
                self.deadline = now + SLACK
            self._enter("placed", now)
            self._follow(now)
            return
        try:
            workers = _workers(self.client)
        except Exception:
            return
        fit = fitting(workers, self.needs)
        self._enter("queued" if fit else "no-worker", now)
        if self.said or now - self.since < (SAY_AFTER if fit else 0):
            pass
        elif fit:
            # Behind other builds for a free VM slot: no deadline of its own
            # (the builds it waits for have theirs).
            self.say(f"waiting for a free VM slot ({len(fit)} workers can take it, all busy)")
            self.said = True
        else:
            gone = f"its worker {self.placed_name} is gone; " if self.placed else ""
            self.say(f"{gone}waiting up to {self.cluster.wait_for_worker:.0f} s ([cluster] "
                     f"wait_for_worker) for a worker offering {', '.join(sorted(self.needs))}; "
                     f"workers offer: {offers(workers)}")
            self.said = True
        if not fit and now - self.since > self.cluster.wait_for_worker:
            raise UserError(
                f"build {self.build.name}: no worker of {self.cluster.scheduler} offered "
                f"{', '.join(sorted(self.needs))} within {self.cluster.wait_for_worker:.0f} s "
                f"([cluster] wait_for_worker); workers offer: {offers(workers)}. Start one on "
                "a host with that QEMU (python -m revive.cluster.worker) or retake the snapshot")

    def _events(self) -> list:
        try:
            return list(self.client.get_events(f"revive-{self.future.key}"))
        except Exception:
            return []

    def _follow(self, now: float) -> None:
        """The deadline of a placed build: fetching what it lacks at
        FETCH_RATE at least, then its own timeout and revive."""
        events = self._events()
        for _, msg in events[self.seen_events:]:
            if msg.get("worker") != self.placed:
                continue          # from where it ran before
            if msg.get("phase") == "fetch":
                self.deadline = now + msg.get("bytes", 0) / FETCH_RATE + SLACK
            elif msg.get("phase") == "build":
                self.deadline = now + self.build.timeout + self.build.revive_timeout + SLACK
        self.seen_events = len(events)
        if now > self.deadline:
            raise UserError(
                f"build {self.build.name}: no answer from {self.placed_name}"
                " in time ([builds.NAME] timeout + [timeouts] revive while building, at least "
                f"{FETCH_RATE >> 20} MiB/s while fetching); see that worker's log")


def _wait(client, future, build, cluster, needs, log: Path) -> dict:
    """Wait for the build, saying where it is placed (again, if its worker
    died) and what it waits for while no worker can take it."""
    from distributed.scheduler import KilledWorker
    watch = _Watch(client, future, build, cluster, needs)
    next_look = 0.0
    # Not future.result(timeout=POLL): distributed's sync() raises
    # UnboundLocalError ('result') when the wait it times is cancelled
    # under it (a build on a cluster failed so); the answer is asked for
    # once the future says it is done.
    done = threading.Event()
    future.add_done_callback(lambda _future: done.set())
    while True:
        try:
            if done.wait(POLL) or future.done():
                return future.result()
        except KilledWorker:
            raise UserError(f"build {build.name}: the workers running it died too often "
                            "(Dask's distributed.scheduler.allowed-failures); see the "
                            "workers' logs") from None
        except (asyncio.CancelledError, concurrent.futures.CancelledError) as err:
            why = getattr(err, "reason", None) or "no reason given"
            raise UserError(f"build {build.name}: the scheduler {cluster.scheduler} dropped it "
                            f"({why}: was the scheduler restarted?); run it again (Dask's "
                            f"messages: {log})") from None
        except Exception as err:     # e.g. a worker without revive's code or dependencies
            raise UserError(f"build {build.name}: the cluster could not run it: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                            ) from None
        if client.status not in ("running", "connecting"):
            raise UserError(f"config.toml: [cluster] scheduler: lost the connection to "
                            f"{cluster.scheduler} during build {build.name} (Dask's messages: "
                            f"{log})")
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + LOOK
            watch.look()


def _processing_on(client, key) -> "str | None":
    """The address of the worker the scheduler has placed ``key`` on."""
    try:
        return next((a for a, keys in client.processing().items() if key in keys), None)
    except Exception:
        return None


def _worker_name(client, address: str) -> str:
    try:
        worker = client.scheduler_info(n_workers=-1).get("workers", {}).get(address, {})
    except Exception:
        worker = {}
    name = worker.get("name")
    return f"{address if name is None else name} ({address})"


def _lay_out(paths, build, cluster, answer: dict, published: float,
             sent: int) -> "tuple[Path, dict]":
    """Fetch what the worker put into the store, checked as a local
    collection is, into artifacts/builds/NAME and artifacts/logs."""
    target = paths.builds / build.name
    worker = answer["worker"]
    what = f"build {build.name}: what worker {worker['name']} sent back"
    tmp = paths.work / "cluster" / f"unpack-{build.name}-{os.getpid()}"
    remove(tmp)
    try:
        files = answer.get("files") or {}
        store = st.Store(cluster.store) if files else None
        if "logs" in files:
            st.fetch_tree(store, files["logs"], tmp / "logs", what)
            _keep_logs(tmp / "logs", paths.logs)
        if answer["error"]:
            log = paths.logs / f"build-{build.name}-cluster.log"
            log.write_text(f"worker {worker['name']} ({worker['address']}, host "
                           f"{worker['host']}): {answer['error']}\n")
            raise UserError(f"build {build.name} on worker {worker['name']}: {answer['error']}"
                            f" (worker paths; copies of its logs are in {paths.logs})")
        result = dict(answer["result"])
        result["timings"] = {**result.get("timings", {}), "fetch": answer["fetch"],
                             "publish": published}
        result["worker"] = {**worker, "published_bytes": sent}
        with atomic_path(target) as out:
            st.fetch_tree(store, files["out"], out, what)
            (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        remove(tmp)
    return target, result


def _keep_logs(src: Path, dest: Path) -> None:
    """The worker's QEMU and serial logs, beside the local ones."""
    if not src.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.is_symlink():
            os.replace(f, dest / f.name)
