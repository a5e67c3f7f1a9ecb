"""The submitting side: publish what the store lacks, place the build on a
worker that can revive its snapshot, wait, and lay out
artifacts/builds/NAME/ exactly as a local build does (plus ``worker`` in
result.json). One Dask client per process (each of doit's -n processes is
a client); Ctrl-C cancels the build on the cluster."""

import asyncio
import fcntl
import json
import multiprocessing
import os
import shutil
import time
import uuid
from pathlib import Path

from ..core.errors import UserError
from ..core.files import atomic_path, remove
from ..machine import revive_files
from ..qemu import saved
from . import resources as res
from . import store as st
from . import thunk

CONNECT_TIMEOUT = 15.0      # seconds to reach the scheduler
FETCH_ALLOWANCE = 1800.0    # seconds a worker may spend fetching a bundle
POLL = 0.3

_clients: dict = {}


def client_for(scheduler: str):
    """This process's client; an unreachable scheduler is one line."""
    if scheduler in _clients:
        return _clients[scheduler]
    import logging
    from distributed import Client
    # The client logs its own retries at length; our one line says it all.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise UserError(f"config.toml: [cluster] scheduler: cannot reach {scheduler} within "
                        f"{CONNECT_TIMEOUT:.0f} s ({type(err).__name__}); start `dask "
                        "scheduler` there, fix the address, or set REVIVE_SCHEDULER=local "
                        "to build on this host") from None
    _clients[scheduler] = client
    return client


def check_placeable(client, needs: "dict[str, int]", scheduler: str) -> None:
    """Refuse at once a build no worker can run, rather than queue it forever."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    fit = [w for w in workers.values()
           if all(w.get("resources", {}).get(k, 0) >= v for k, v in needs.items())]
    if fit:
        return
    wanted = next(k for k in needs if k.startswith("qemu-"))
    offers = "; ".join(f"{w.get('name')}: {res.describe(w.get('resources', {}))}"
                       for w in workers.values()) or "no workers connected"
    raise UserError(f"no worker of {scheduler} can revive this snapshot ({wanted}); "
                    f"workers offer: {offers}. Start one on a host with that QEMU "
                    "(python -m revive.cluster.worker) or retake the snapshot")


def announce_dashboard(client, work: Path) -> None:
    """The dashboard address, once per doit run (doit's -n processes share
    the parent's pid as the run's id)."""
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
    client = client_for(cluster.scheduler)
    announce_dashboard(client, paths.work)
    check_placeable(client, needs, cluster.scheduler)
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
        answer = _wait(client, future, request, cluster)
    except BaseException:
        future.cancel()     # Ctrl-C, a deadline, a lost scheduler: stop it there too
        raise
    finally:
        future.release()
    return _lay_out(paths, request, answer, published, sent)


def _wait(client, future, build, cluster) -> dict:
    """Wait for the build, saying where it is placed (again, if its worker
    died); the deadline runs from each placement."""
    from distributed.scheduler import KilledWorker
    limit = build.timeout + build.revive_timeout + FETCH_ALLOWANCE
    placed, deadline = None, None
    while True:
        try:
            return future.result(timeout=POLL)
        except TimeoutError:
            pass
        except KilledWorker:
            raise UserError(f"build {build.name}: the workers running it died too often "
                            "(Dask's distributed.scheduler.allowed-failures); see the "
                            "workers' logs") from None
        except asyncio.CancelledError:
            raise UserError(f"build {build.name}: cancelled by the cluster (was the "
                            f"scheduler {cluster.scheduler} restarted?); run it again") from None
        except Exception as err:     # e.g. a worker without revive's code or dependencies
            raise UserError(f"build {build.name}: the cluster could not run it: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                            ) from None
        if client.status not in ("running", "connecting"):
            raise UserError(f"config.toml: [cluster] scheduler: lost the connection to "
                            f"{cluster.scheduler} during build {build.name}")
        where = _processing_on(client, future.key)
        if where and where != placed:
            _say(f"build {build.name}: placed on {_worker_name(client, where)}"
                 + (" (again)" if placed else ""))
            placed, deadline = where, time.monotonic() + limit
        if deadline and time.monotonic() > deadline:
            raise UserError(f"build {build.name}: no answer from {placed} within "
                            f"{limit:.0f} s ([builds.{build.name}] timeout + [timeouts] "
                            "revive + fetching)")


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
    return f"{worker.get('name') or address} ({address})"


def _lay_out(paths, build, answer: dict, published: float, sent: int) -> "tuple[Path, dict]":
    target = paths.builds / build.name
    worker = answer["worker"]
    tmp = paths.work / "cluster" / f"unpack-{build.name}-{os.getpid()}"
    remove(tmp)
    try:
        st.unpack(answer["tarball"], tmp, f"build {build.name}: what worker "
                  f"{worker['name']} sent back")
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
            shutil.move(str(tmp / "out"), out)
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
