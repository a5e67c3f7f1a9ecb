#!/usr/bin/env python3
"""The tiny guest per architecture, in one run on this machine: an empty
project to its first build (payload, install, snapshot, build; the
package cache warm), then launch → first command answered by a cold boot
of the installed disk (over SSH, as soon as dropbear answers) against a
revive of the snapshot (over the guest agent, as a build does; and over
SSH), medians of --runs. One table; docs/benchmarks.md keeps it.

    /work/heavy .venv/bin/python bench/arch.py [--runs 5] [--arch ARCH ...]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from revive_vs_boot import cold_boot, doit, revived  # noqa: E402
from tasks.common import Paths  # noqa: E402
from revive.config import load  # noqa: E402
from revive.qemu.devices import ARCHES  # noqa: E402

CONFIG = """
[guest]
kind = "tiny"
arch = "{arch}"

[vm]
memory = "256M"

[timeouts]
install = "15m"
boot = "5m"
revive = "1m"

[shares.xchg]
guest = "/mnt/xchg"
mode = "rw"

[builds.uname]
command = "uname -m > /mnt/xchg/arch.txt"
outputs = ["arch.txt"]
timeout = "2m"
"""


def one(arch: str, runs: int, root: Path) -> dict:
    project = root / arch
    project.mkdir()
    (project / "config.toml").write_text(CONFIG.format(arch=arch))
    first = doit(project, "build")
    answer = (project / "artifacts/builds/uname/outputs/arch.txt").read_text().strip()
    assert answer == ARCHES[arch].uname, answer
    cfg = load(project / "config.toml")
    paths = Paths(cfg)
    meta = json.loads((paths.snapshot / "meta.json").read_text())
    work = root / f"{arch}-work"
    cold, agent, ssh = [], [], []
    for _ in range(runs):
        cold.append(cold_boot(paths, meta, cfg, work))
        agent.append(revived(paths, meta, cfg, work, "agent"))
        ssh.append(revived(paths, meta, cfg, work, "ssh"))
    med = {k: statistics.median(v) for k, v in
           (("cold", cold), ("agent", agent), ("ssh", ssh))}
    return {"arch": arch, "first_build": first, **med,
            "ranges": {"cold": (min(cold), max(cold)), "agent": (min(agent), max(agent)),
                       "ssh": (min(ssh), max(ssh))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["arm64", "riscv64", "amd64"],
                        choices=sorted(ARCHES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-arch-") as tmp:
        for arch in args.arch:
            start = time.monotonic()
            rows.append(one(arch, args.runs, Path(tmp)))
            # Each arch's numbers as soon as it is done: a later arch's
            # failure does not lose them.
            print(f"{arch}: done in {time.monotonic() - start:.0f} s: {rows[-1]}",
                  file=sys.stderr)
    print(f"\nmedians of {args.runs}; launch → first command answered\n")
    print("| arch | empty project → first build | cold boot → SSH answer | "
          "revive → agent answer | revive → SSH answer | cold / revive (agent) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['first_build']:.1f} s | {r['cold']:.2f} s | "
              f"{r['agent']:.3f} s | {r['ssh']:.3f} s | {r['cold'] / r['agent']:.1f}× |")
    print("\nranges (min–max): " + "; ".join(
        f"{r['arch']}: " + ", ".join(f"{k} {lo:.2f}–{hi:.2f} s"
                                     for k, (lo, hi) in r["ranges"].items())
        for r in rows))


if __name__ == "__main__":
    main()
