#!/usr/bin/env python3
"""Builds on two local Dask workers against the same builds on this host.

In a throwaway project (tiny guest, TCG): the snapshot is made once; then 8
builds of about 5 s each run (a) locally with `doit -n 2 build`, (b) on a
`dask scheduler` and two workers with one VM slot each (`doit -n 8 build`)
with empty caches and an empty store, and (c) again with everything cached.
Prints wall times with their ratio to (a), what publishing and fetching
the bundle cost the first builds against later ones, and from those
measured costs the expected wall time of 100 builds on 1, 4 and 16 workers
(one VM slot each, builds like these, the store and the submitting host
keeping up; see the model in ``estimate``).

    flock /tmp/revive-qemu.lock .venv/bin/python bench/cluster.py [--builds 8] [--sleep 4]
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))

sys.path.insert(0, str(REPO))
from bench.measure import cluster_table, stop  # noqa: E402
from tests import configs  # noqa: E402


def config(store: Path, certs: Path, n: int, sleep: float) -> dict:
    """A tiny-guest project under TCG with ``n`` builds sleeping ``sleep`` s."""
    return configs.tiny(
        "revive-bench", vm={"accel": "tcg"},
        cluster=cluster_table(store, certs),
        builds={f"b{i}": configs.build(f"sleep {sleep}; echo {i} > /mnt/xchg/out.txt",
                                       outputs=["out.txt"], timeout="5m")
                for i in range(1, n + 1)})


def doit(project: Path, scheduler: str, *args: str) -> "tuple[float, str]":
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"),
               REVIVE_SCHEDULER=scheduler)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(project), *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start, proc.stdout


def results(project: Path, n: int) -> "list[dict]":
    return [json.loads((project / f"artifacts/builds/b{i}/result.json").read_text())
            for i in range(1, n + 1)]


def start(procs: list, argv, log: Path, **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    procs.append(p)
    return p


def wait_cluster(info: Path, workers: int, procs) -> str:
    deadline = time.monotonic() + 90
    while not info.exists():
        if time.monotonic() > deadline or procs[0].poll() is not None:
            sys.exit("the scheduler did not start")
        time.sleep(0.1)
    time.sleep(0.2)
    return json.loads(info.read_text())["address"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=4.0, help="seconds each build's command sleeps")
    args = ap.parse_args()
    n = args.builds
    with tempfile.TemporaryDirectory(prefix="revive-bench-cluster-") as tmp:
        root = Path(tmp)
        project = root / "project"
        (project / "src").mkdir(parents=True)
        (project / "src" / "data.txt").write_text("x\n")
        configs.write(project, config(root / "store", root / "certs", n, args.sleep))
        doit(project, "local", "snapshot")

        local, _ = doit(project, "local", "-n", "2", "build")
        local_cmd = statistics.median(r["timings"]["total"] for r in results(project, n))

        from revive.cluster import certs
        certs.make(root / "certs")
        cdir = root / "certs"
        procs: "list[subprocess.Popen]" = []
        try:
            start(procs, [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                          "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
                          str(root / "sched.json"), *certs.scheduler_flags(cdir)],
                  root / "sched.log")
            address = wait_cluster(root / "sched.json", 2, procs)
            for w in ("wa", "wb"):
                start(procs, [sys.executable, "-m", "revive.cluster.worker", address, "--vms",
                              "1", "--cache", str(root / w), "--accel", "tcg",
                              "--certs", str(cdir)], root / f"{w}.log", cwd=REPO)
            from distributed import Client
            with Client(address, timeout=30, set_as_default=False,
                        security=certs.security(cdir, "client", "bench")) as c:
                c.wait_for_workers(2, timeout=90)

            shutil.rmtree(project / "artifacts" / "builds")     # so every build reruns
            cold, _ = doit(project, address, "-n", str(n), "build")
            cold_results = results(project, n)
            shutil.rmtree(project / "artifacts" / "builds")
            warm, _ = doit(project, address, "-n", str(n), "build")
            warm_results = results(project, n)
        finally:
            stop(procs)

        bundle = sum(f.stat().st_size for f in (root / "store" / "objects").rglob("*") if f.is_file())
        on_disk = sum(f.stat().st_blocks * 512 for f in (root / "store" / "objects").rglob("*")
                      if f.is_file())
        uploader = max(cold_results, key=lambda r: r["timings"]["publish"])
        first_fetch = max(cold_results, key=lambda r: r["timings"]["fetch"])
        later = [r for r in cold_results if r is not uploader and r is not first_fetch] + warm_results
        print(f"\n{n} builds of `sleep {args.sleep:g}` in the tiny guest, TCG, 2 shared cores; "
              f"bundle {bundle / 2**20:.0f} MiB ({on_disk / 2**20:.0f} MiB on disk, sparse)\n")
        print("| run | wall time, s | vs local |")
        print("|---|---|---|")
        for label, t in (("local `doit -n 2 build`", local),
                         ("2 workers × 1 VM, empty store and caches (`doit -n 8`)", cold),
                         ("2 workers × 1 VM, bundle cached (`doit -n 8`)", warm)):
            print(f"| {label} | {t:.1f} | {t / local:.2f} |")
        med = lambda key: statistics.median(r["timings"][key] for r in later)  # noqa: E731
        print("\n| per build | publish, s | fetch, s | build on the worker, s |")
        print("|---|---|---|---|")
        print(f"| the one that uploaded the bundle | {uploader['timings']['publish']:.2f} "
              f"| {uploader['timings']['fetch']:.2f} | {uploader['timings']['total']:.2f} |")
        print(f"| the slowest first fetch on a worker | {first_fetch['timings']['publish']:.2f} "
              f"| {first_fetch['timings']['fetch']:.2f} | {first_fetch['timings']['total']:.2f} |")
        print(f"| later ones, median (bundle in store and cache) | {med('publish'):.2f} "
              f"| {med('fetch'):.2f} | {med('total'):.2f} |")
        print(f"| local build, median | – | – | {local_cmd:.2f} |")
        estimate(n=n, workers=2, warm=warm, bundle=bundle, uploader=uploader,
                 first_fetch=first_fetch, build=med("total"), publish=med("publish"))


def estimate(*, n: int, workers: int, warm: float, bundle: int, uploader: dict,
             first_fetch: dict, build: float, publish: float) -> None:
    """Expected wall time of 100 such builds on W workers of one VM slot:

        T(W) = upload + fetch(W) + ceil(100 / W) * (build + per_build)

    upload: publishing the bundle once (the uploader's publish time);
    fetch(W): every worker fetching the bundle at once from one store, at
    the aggregate rate measured here (both workers fetched it together);
    build: a build on a worker, median; per_build: what each build adds
    around it (its own publish, placement, the results' round trip),
    measured from the warm run as wall time per wave of builds minus the
    build. Assumes the store serves W fetches at the measured aggregate
    rate (a store with more bandwidth does better), the scheduler and the
    submitting host keep up (doit -n W at least), and that W hosts do not
    share cores as the two workers here do."""
    waves = math.ceil(n / workers)
    per_build = max(0.0, warm / waves - build)
    rate = workers * bundle / max(first_fetch["timings"]["fetch"], 1e-3)
    upload = uploader["timings"]["publish"]
    print(f"\nEstimate for 100 builds like these (build {build:.2f} s + {per_build:.2f} s "
          f"around it; bundle {bundle / 2**20:.0f} MiB uploaded in {upload:.2f} s, fetched at "
          f"{rate / 2**20:.0f} MiB/s in all):\n")
    print("| workers (1 VM each) | bundle fetch, s | waves | expected wall time, s |")
    print("|---|---|---|---|")
    for w in (1, 4, 16):
        fetch = w * bundle / rate
        total = upload + fetch + math.ceil(100 / w) * (build + per_build)
        print(f"| {w} | {fetch:.1f} | {math.ceil(100 / w)} | {total:.0f} |")

if __name__ == "__main__":
    main()
