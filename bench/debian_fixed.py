#!/usr/bin/env python3
"""A build's fixed cost on the Debian guest, this tree against another
tree, in one run: each side is a tree with its own venv and a Debian
project whose snapshot that tree made (examples/debian.toml plus a short
build, e.g. `uname -a > /mnt/xchg/uname.txt`). Alternating the sides, each
round runs `doit forget build:NAME` and `doit build:NAME` (fixed cost:
result.json total − command; the guest's prepare phase) and revive → first
command over the agent (bench/debian_side.py). Medians and every value.

    /work/heavy .venv/bin/python bench/debian_fixed.py \\
        --side main=/tmp/base:/tmp/base-project --side head=.:/tmp/head-project \\
        [--build uname] [--runs 7]

Both sides may name the same project: each then runs its own code for
the build and the revive against one snapshot (made by either tree). The
build runs as `doit -s build:NAME` (the build task alone): the other
tree's stages may read other inputs (its payload code, the snapshot's
resident runner), and doit would remake them. A tree's venv is TREE/.venv;
bench/debian.py --baseline makes both projects from scratch and times
hello instead.
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def doit(tree: Path, project: Path, *args: str) -> float:
    env = dict(os.environ, REVIVE_CACHE=os.environ.get("REVIVE_CACHE",
                                                     str(REPO / "artifacts" / "cache")))
    start = time.monotonic()
    proc = subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "doit", "-f",
                           str(tree / "dodo.py"), "-d", str(project), *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"doit {' '.join(args)} in {project} failed:\n{proc.stdout[-2000:]}"
                         f"\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def one_round(tree: Path, project: Path, build: str) -> dict:
    # Sides may share one project (one snapshot for both: two snapshots of
    # the same recipe differ by 0.1-0.25 s), whose stages another side's
    # code made: the build task runs alone (-s), so they are not remade.
    doit(tree, project, "forget", f"build:{build}")
    wall = doit(tree, project, "-s", f"build:{build}")
    timings = json.loads((project / "artifacts" / "builds" / build / "result.json")
                         .read_text())["timings"]
    revive = subprocess.run([str(tree / ".venv" / "bin" / "python"),
                             str(REPO / "bench" / "debian_side.py"), str(tree), str(project),
                             "revive", "agent"], capture_output=True, text=True, check=True,
                            stdin=subprocess.DEVNULL)
    return {"fixed": timings["total"] - timings["command"], "prepare": timings.get("prepare"),
            "channel": timings.get("channel"), "wall": wall,
            "revive_first": json.loads(revive.stdout.strip().splitlines()[-1])["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", action="append", required=True,
                        help="LABEL=TREE:PROJECT (twice)")
    parser.add_argument("--build", default="uname")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sides = []
    for spec in args.side:
        label, _, rest = spec.partition("=")
        tree, _, project = rest.partition(":")
        sides.append((label, Path(tree).resolve(), Path(project).resolve()))
    results = {label: [] for label, _, _ in sides}
    load = lambda: " ".join(Path("/proc/loadavg").read_text().split()[:3])  # noqa: E731
    print(f"start {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {load()}")
    for i in range(args.runs):
        for label, tree, project in sides if i % 2 == 0 else sides[::-1]:
            results[label].append(one_round(tree, project, args.build))
            print(label, json.dumps(results[label][-1]), flush=True)
    print(f"end {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {load()}\n")
    print(f"| build:{args.build}, medians of {args.runs} (range) | "
          + " | ".join(label for label, _, _ in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for key, name in (("fixed", "fixed cost (total − command)"), ("prepare", "prepare (guest)"),
                      ("channel", "channel"), ("wall", "doit build wall"),
                      ("revive_first", "revive → first command (agent)")):
        cells = []
        for label, _, _ in sides:
            values = [r[key] for r in results[label] if r[key] is not None]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"
                         if values else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
