#!/usr/bin/env python3
"""Peak memory of the scheduler, the worker and the submitting doit while a
build on the cluster writes a big output file (issue 17: outputs travel
through the store by sha256, not through Dask).

A throwaway tiny-guest project gets its snapshot; a TLS `dask scheduler`
and one revive worker start on this host; then builds writing a SMALL and
a BIG output file (MB, zeros) run one after the other on the cluster. For
each, the peak resident set (VmHWM) of the doit process (polled while it
runs) and the growth of the scheduler's and the worker's peaks are printed.

    /work/heavy .venv/bin/python bench/cluster_output_memory.py [--sizes 10,2000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DASK = str(Path(sys.executable).with_name("dask"))

from bench.measure import cluster_table, doit_with_peak, peak_kb, stop  # noqa: E402
from tests import configs  # noqa: E402


def config(store: Path, certs: Path, sizes) -> dict:
    return configs.tiny(
        "revive-bench", vm={"accel": "tcg"},
        cluster=cluster_table(store, certs),
        builds={f"out{mb}": configs.build(f"head -c {mb}000000 /dev/zero > /mnt/xchg/big",
                                          outputs=["big"], timeout="30m")
                for mb in sizes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,2000", help="output sizes in MB")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from revive.cluster import certs
    with tempfile.TemporaryDirectory(prefix="revive-bench-outmem-") as tmp:
        root = Path(tmp)
        project = root / "project"
        (project / "src").mkdir(parents=True)
        c = root / "certs"
        certs.make(c)
        configs.write(project, config(root / "store", c, sizes))
        doit_with_peak(project, "snapshot", REVIVE_SCHEDULER="local")
        procs = []
        try:
            procs.append(subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(root / "s.json"),
                 *certs.scheduler_flags(c)],
                stdout=open(root / "s.log", "w"), stderr=subprocess.STDOUT,
                start_new_session=True))
            deadline = time.monotonic() + 60
            while not (root / "s.json").exists():
                if time.monotonic() > deadline:
                    sys.exit("the scheduler did not start")
                time.sleep(0.1)
            time.sleep(0.2)
            address = json.loads((root / "s.json").read_text())["address"]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "revive.cluster.worker", address, "--certs", str(c),
                 "--cache", str(root / "w"), "--accel", "tcg"], cwd=REPO,
                stdout=open(root / "w.log", "w"), stderr=subprocess.STDOUT,
                start_new_session=True))
            from distributed import Client
            with Client(address, timeout=30, set_as_default=False,
                        security=certs.security(c, "client", "bench")) as client:
                client.wait_for_workers(1, timeout=90)
            sched, worker = procs[0].pid, procs[1].pid
            print(f"{'output':>9} {'seconds':>8} {'doit peak':>10} {'scheduler peak':>15} "
                  f"{'worker peak':>12}  (MiB)")
            for mb in sizes:
                seconds, peak = doit_with_peak(project, f"build:out{mb}", REVIVE_SCHEDULER=address)
                got = (project / "artifacts/builds" / f"out{mb}" / "outputs/big").stat().st_size
                assert got == mb * 1000000, got
                print(f"{mb:>6} MB {seconds:>8.1f} {peak / 1024:>10.1f} "
                      f"{peak_kb(sched) / 1024:>15.1f} {peak_kb(worker) / 1024:>12.1f}")
        finally:
            stop(procs)


if __name__ == "__main__":
    main()
