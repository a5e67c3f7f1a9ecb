"""Start a Dask worker for revive on this host:

    .venv/bin/python -m revive.cluster.worker tls://HOST:8786 --vms 2 --cache /var/cache/revive

It works out what this host can revive (QEMU version; accelerators: TCG
always, KVM when a real kernel boots under it) and runs a Dask worker in
this process offering those as resources, one thread per VM slot and no
nanny: the worker process is the parent of every QEMU it starts, so QEMU
dies with it (PDEATHSIG) if the worker is killed. What a build needs on
this host (the cache, the work folder, the running machines) lives in a
``WorkerPlugin`` named ``revive`` that the build task looks up."""

import argparse
import asyncio
import json
import logging
import socket
import sys
import threading
import uuid
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from ..core.errors import UserError
from ..core.files import remove
from .. import qemu
from ..qemu import accel as accel_mod
from . import certs
from . import store as st
from .resources import emulators, offered
from .store import parse_size

PLUGIN = "revive"


class Cancelled(UserError):
    """The submitting host cancelled the build (Ctrl-C, its deadline)."""


class RevivePlugin(WorkerPlugin):
    """This worker's revive set-up: its cache of fetched objects, the folder
    builds work in, what it offers, and the machines its builds run, so
    that a build the scheduler cancels (the client's Ctrl-C or deadline)
    has its QEMU stopped at once through its machine object."""

    name = PLUGIN

    def __init__(self, cache: Path, cache_size: int, resources: "dict[str, int]", why: str):
        self.folder = Path(cache)
        self.cache_size = cache_size
        self.resources = resources
        self.why = why
        self.work = self.folder / "work"
        self._lock = threading.Lock()
        self._machines: "dict[str, object]" = {}
        self._cancelled: "set[str]" = set()
        self._running: "set[str]" = set()

    def setup(self, worker) -> None:
        self.cache = st.Cache(self.folder, self.cache_size)
        remove(self.work)     # a previous worker's leftovers (it was killed)
        self.work.mkdir(parents=True)

    def teardown(self, worker) -> None:
        """The worker closes (a signal, or the scheduler is gone): its builds'
        results have nowhere to go, so their QEMU stops now (Dask then waits
        for the task threads, which end at once)."""
        with self._lock:
            self._cancelled |= self._running
            machines = list(self._machines.values())
        for machine in machines:
            machine.cancel("the worker is closing")

    # -- the builds' side -------------------------------------------------
    def started(self, key: str) -> None:
        with self._lock:
            self._running.add(key)

    def finished(self, key: str) -> None:
        with self._lock:
            self._running.discard(key)
            self._cancelled.discard(key)
            self._machines.pop(key, None)

    def check(self, key: str) -> None:
        """Raise ``Cancelled`` if the build of ``key`` was cancelled."""
        if key in self._cancelled:
            raise Cancelled("cancelled by the submitting host")

    def cancelled(self, key: str) -> bool:
        return key in self._cancelled

    def machine_started(self, key: str, machine) -> None:
        """Called by the build (in its task thread) once its QEMU runs."""
        with self._lock:
            self._machines[key] = machine
            stop = key in self._cancelled
        if stop:
            machine.cancel("cancelled by the submitting host")

    # -- Dask's side: the scheduler tells the worker a task is cancelled --
    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish not in ("cancelled", "released", "forgotten"):
            return
        with self._lock:
            if key not in self._running:
                return
            self._cancelled.add(key)
            machine = self._machines.get(key)
        if machine is not None:
            machine.cancel("cancelled by the submitting host")   # kills QEMU, never waits


def plugin_of(worker) -> RevivePlugin:
    plugin = worker.plugins.get(PLUGIN)
    if plugin is None:
        raise UserError("this Dask worker was not started for revive; start it with "
                        "python -m revive.cluster.worker")
    return plugin


def _probe_kernel(cache: Path) -> Path:
    """A kernel for the KVM probe: the host's own if readable, else the tiny
    guest's pinned one (downloaded into the cache once)."""
    import os
    for path in sorted(Path("/boot").glob("vmlinuz-*"), reverse=True):
        if os.access(path, os.R_OK):
            return path
    from ..guests.linux import installer
    return installer.probe_kernel(cache / "debs", cache / "probe.log")


def accelerators(requested: str, cache: Path) -> "tuple[list[str], str]":
    if requested == "tcg":
        return ["tcg"], "asked for tcg only"
    name, why = accel_mod.choose(requested, lambda: _probe_kernel(cache), cache / "accel.json")
    return (["kvm", "tcg"] if name == "kvm" else ["tcg"]), why


def default_name() -> str:
    """Unique without the user choosing: cloned hosts often share a host
    name, and several workers may run on one host."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:4]}"


def root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def name_taken(err: BaseException) -> bool:
    return "name taken" in str(err)


async def serve(scheduler: str, *, name: str, vms: int, plugin: RevivePlugin,
                extra: "dict") -> int:
    """Run the worker until SIGINT/SIGTERM. A Dask worker closes when its
    scheduler goes away (restarted, or out of reach); without a nanny, this
    joins it again under the same name."""
    from distributed import Worker
    from distributed._signals import wait_for_signals
    signals = asyncio.ensure_future(wait_for_signals())
    try:
        while True:
            worker = Worker(scheduler, name=name, nthreads=vms, resources=plugin.resources,
                            local_directory=str(plugin.folder / "dask"), plugins=(plugin,),
                            death_timeout=60, **extra)
            # Dask logs a failed start with two tracebacks; main() says it in one line.
            quiet = logging.getLogger("distributed")
            quiet.setLevel(logging.CRITICAL)
            try:
                await worker
            finally:
                quiet.setLevel(logging.WARNING)
            finished = asyncio.ensure_future(worker.finished())
            await asyncio.wait([signals, finished], return_when=asyncio.FIRST_COMPLETED)
            if signals.done():
                await worker.close(reason="signal")
                return 0
            print(f"revive: worker {name}: lost the scheduler {scheduler}; joining it again "
                  "(up to 60 s)", flush=True)
    finally:
        signals.cancel()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m revive.cluster.worker",
                                description="a Dask worker that runs revive builds")
    p.add_argument("scheduler", help="the scheduler's address, e.g. tls://10.0.0.1:8786")
    p.add_argument("--vms", type=int, default=1, help="VM slots: builds at once (default 1)")
    p.add_argument("--cache", required=True, type=Path,
                   help="this host's folder for fetched objects and build work")
    p.add_argument("--cache-size", default="20G",
                   help="bound of the object cache (least recently used out first)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--certs", type=Path, default=None,
                   help="the folder holding the cluster's ca.pem and worker.pem "
                        "(revive cluster certs DIR)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a plain tcp:// scheduler: anyone who reaches it runs code here")
    p.add_argument("--host", default=None,
                   help="the address this worker listens on (default: the one that routes "
                        "to the scheduler)")
    p.add_argument("--name", default=None,
                   help="worker name, unique per scheduler (default: the host name and a "
                        "short random id)")
    args = p.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        size = parse_size(args.cache_size)
        if args.vms < 1:
            raise UserError("--vms must be at least 1")
        cache = args.cache.resolve()
        cache.mkdir(parents=True, exist_ok=True)
        extra = {"host": args.host} if args.host else {}
        if args.certs is not None:
            extra["security"] = certs.security(args.certs, "worker", "--certs")
        elif not args.insecure:
            raise UserError(f"{args.scheduler}: a worker runs whatever the scheduler's "
                            "clients submit; give it --certs DIR (revive cluster certs) and a "
                            "tls:// scheduler, or --insecure on a network you trust")
        if args.certs is not None and not args.scheduler.startswith("tls://"):
            raise UserError(f"--certs needs a tls:// scheduler address, not {args.scheduler}")
        accels, why = accelerators(args.accel, cache)
        resources = offered(qemu.version(), accels, args.vms,
                            foreign=emulators(qemu.version))
    except (UserError, ValueError) as err:
        print(f"revive: {err}", file=sys.stderr)
        return 2
    name = args.name or default_name()
    plugin = RevivePlugin(cache, size, resources, why)
    print(f"revive: worker {name}: {json.dumps(resources)} ({why}); cache {cache}", flush=True)
    try:
        return asyncio.run(serve(args.scheduler, name=name, vms=args.vms, plugin=plugin,
                                 extra=extra))
    except (OSError, TimeoutError, ValueError, RuntimeError) as err:
        err = root_cause(err)
        if name_taken(err):
            print(f"revive: worker {name}: the scheduler {args.scheduler} already has a "
                  "worker of that name; choose another --name or leave it out (the default "
                  "is unique)", file=sys.stderr)
        else:
            print(f"revive: worker {name}: cannot join the scheduler {args.scheduler}: "
                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                  file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
