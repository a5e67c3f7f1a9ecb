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
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DASK = str(Path(sys.executable).with_name("dask"))

from tests import configs  # noqa: E402


def config(store: Path, certs: Path, sizes) -> dict:
    return configs.tiny(
        "revive-bench", vm={"accel": "tcg"},
        cluster={"scheduler": "tls://127.0.0.1:9", "store": f"file://{store}",
                 "certs": str(certs)},
        builds={f"out{mb}": configs.build(f"head -c {mb}000000 /dev/zero > /mnt/xchg/big",
                                          outputs=["big"], timeout="30m")
                for mb in sizes})


def hwm(pid: int) -> int:
    """Peak resident set of ``pid`` in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def doit(project: Path, scheduler: str, *args: str) -> "tuple[float, int]":
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"),
               REVIVE_SCHEDULER=scheduler)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                             "-d", str(project), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, hwm(proc.pid))
        time.sleep(0.05)
    out = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{out}")
    return time.monotonic() - start, peak


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
        doit(project, "local", "snapshot")
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
                seconds, peak = doit(project, address, f"build:out{mb}")
                got = (project / "artifacts/builds" / f"out{mb}" / "outputs/big").stat().st_size
                assert got == mb * 1000000, got
                print(f"{mb:>6} MB {seconds:>8.1f} {peak / 1024:>10.1f} "
                      f"{hwm(sched) / 1024:>15.1f} {hwm(worker) / 1024:>12.1f}")
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


if __name__ == "__main__":
    main()
