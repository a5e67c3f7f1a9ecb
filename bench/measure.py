"""What the benches share: doit run with its peak memory watched, the peak
of any process, and the cluster processes stopped on every path."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_kb(pid: int) -> int:
    """Peak resident set of ``pid`` in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def doit_with_peak(project: Path, *args: str, **env: str) -> "tuple[float, int]":
    """Run doit on ``project``; (seconds, peak RSS of the doit process in kB).
    A failed run ends the bench with doit's output."""
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"), **env)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                             "-d", str(project), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, peak_kb(proc.pid))
        time.sleep(0.05)
    out = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{out}")
    return time.monotonic() - start, peak


def cluster_table(store: Path, certs: Path) -> dict:
    """[cluster] of a bench project: a file:// store, the bench's certificates;
    the scheduler's address comes with each run (REVIVE_SCHEDULER)."""
    return {"scheduler": "tls://127.0.0.1:9", "store": f"file://{store}", "certs": str(certs)}


def stop(procs: "list[subprocess.Popen]") -> None:
    """Stop each process group, newest first: SIGTERM, then SIGKILL after 30 s."""
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
