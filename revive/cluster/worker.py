"""Start a Dask worker for revive on this host:

    .venv/bin/python -m revive.cluster.worker tcp://HOST:8786 --vms 2 --cache /var/cache/revive

It works out what this host can revive (QEMU version; accelerators: TCG
always, KVM when a real kernel boots under it) and replaces itself with
``dask worker`` offering those as resources, one thread per VM slot and no
nanny: the worker process is the parent of every QEMU it starts, so QEMU
dies with it (PDEATHSIG) if the worker is killed."""

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from ..core.errors import UserError
from ..core.files import remove
from .. import qemu
from ..qemu import accel as accel_mod
from . import remote
from .resources import emulators, offered
from .store import parse_size

REPO = Path(__file__).resolve().parents[2]


def _probe_kernel(cache: Path) -> Path:
    """A kernel for the KVM probe: the host's own if readable, else the tiny
    guest's pinned one (downloaded into the cache once)."""
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


def dask_argv(scheduler: str, *, name: str, vms: int, resources: "dict[str, int]",
              local_directory: Path, extra: "list[str]") -> "list[str]":
    spec = ",".join(f"{k}={v}" for k, v in resources.items())
    return [str(Path(sys.executable).with_name("dask")), "worker", scheduler,
            "--name", name, "--nthreads", str(vms), "--nworkers", "1", "--no-nanny",
            "--resources", spec, "--local-directory", str(local_directory),
            "--death-timeout", "60", *extra]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m revive.cluster.worker",
                                description="a Dask worker that runs revive builds",
                                epilog="Options after -- go to `dask worker`.")
    p.add_argument("scheduler", help="the scheduler's address, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--vms", type=int, default=1, help="VM slots: builds at once (default 1)")
    p.add_argument("--cache", required=True, type=Path,
                   help="this host's folder for fetched objects and build work")
    p.add_argument("--cache-size", default="20G",
                   help="bound of the object cache (least recently used out first)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--name", default=None, help="worker name (default: the host name)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    try:
        size = parse_size(args.cache_size)
        if args.vms < 1:
            raise UserError("--vms must be at least 1")
        cache = args.cache.resolve()
        cache.mkdir(parents=True, exist_ok=True)
        accels, why = accelerators(args.accel, cache)
        resources = offered(qemu.version(), accels, args.vms,
                            foreign=emulators(qemu.version))
    except (UserError, ValueError) as err:
        print(f"revive: {err}", file=sys.stderr)
        return 2
    work = cache / "work"
    remove(work)          # a previous worker's leftovers (it was killed)
    work.mkdir()
    name = args.name or socket.gethostname()
    argv = dask_argv(args.scheduler, name=name, vms=args.vms, resources=resources,
                     local_directory=cache / "dask", extra=extra)
    env = dict(os.environ, **{remote.ENV_CACHE: str(cache), remote.ENV_CACHE_SIZE: str(size),
                              remote.ENV_WORK: str(work)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print(f"revive: worker {name}: {json.dumps(resources)} ({why}); cache {cache}", flush=True)
    os.chdir(REPO)
    os.execve(argv[0], argv, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
