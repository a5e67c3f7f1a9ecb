#!/usr/bin/env python3
"""The Debian guest, measured in one run on a throwaway project made from
examples/debian.toml: each stage from scratch (the root filesystem comes
from the cache when an identical one was made before; its own making time
is shown), cold boot → first SSH command answered against revive → first
command answered over SSH and over the guest agent (medians of --runs),
and the GNU hello build's wall time (configure, make, make check in a
revived copy; --no-build leaves it out).

With --baseline REV it is an A/B on this machine in one run: REV's tree
(git archive, its own venv) and this one each make their own project
(stages once per side), then revive → first command (--runs per side and
channel) and the hello build (--builds per side) alternate between the
sides; one table of medians, every value and the hello phases (the guest's
uptime echoed before unpack, configure, make, make check) are printed, and
the raw results kept in --json.

    .venv/bin/python bench/debian.py [--runs 5] [--no-build]
    .venv/bin/python bench/debian.py --baseline 725833c [--runs 5] [--builds 2]
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
from revive.guests.debian import from_table, rootfs  # noqa: E402
from revive.qemu import saved  # noqa: E402

STAGES = ["sources:hello", "keys", "payload", "iso", "floppy", "install", "snapshot"]


def make_project(root: Path) -> Path:
    # GNU hello's sources come with the example: its sources:hello task.
    (root / "config.toml").write_text((REPO / "examples" / "debian.toml").read_text())
    return root


def cached_root(project: Path) -> Path:
    """The cache folder of the root this project's payload uses."""
    cfg = load(project / "config.toml")
    settings = from_table(cfg.guest)
    # The cache doit() gives the stages.
    return rootfs.folder_for(settings.suite, settings.sources(), settings.all_packages,
                             REPO / "artifacts" / "cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-build", action="store_true", help="leave out build:hello")
    parser.add_argument("--baseline", metavar="REV",
                        help="A/B against REV's code (e.g. round 1's 725833c)")
    parser.add_argument("--builds", type=int, default=2, help="hello builds per side (A/B)")
    parser.add_argument("--json", type=Path, help="A/B: write the raw results here")
    args = parser.parse_args()
    if args.baseline:
        from debian_ab import compare
        compare(args.baseline, args.runs, 0 if args.no_build else args.builds, args.json)
        return
    with tempfile.TemporaryDirectory(prefix="revive-bench-debian-") as tmp:
        project = make_project(Path(tmp))
        root = cached_root(project)
        fresh = not (root / rootfs.INFO).exists()
        stage_times = {stage: doit(project, stage) for stage in STAGES}
        cfg = load(project / "config.toml")
        paths = Paths(cfg)
        manifest = json.loads(paths.payload_manifest.read_text())
        mmdebstrap = json.loads((root / rootfs.INFO).read_text())["seconds"]
        meta = saved.read_meta(paths.snapshot)
        base = json.loads(paths.base_meta.read_text())
        work = paths.work / "bench"
        cold = [cold_boot(paths, meta, cfg, work) for _ in range(args.runs)]
        warm = {channel: statistics.median(revived(paths, meta, cfg, work, channel)
                                           for _ in range(args.runs))
                for channel in ("ssh", "agent")}
        if not args.no_build:
            build_wall = doit(project, "build:hello")
            result = json.loads((paths.builds / "hello" / "result.json").read_text())
        iso_mib = paths.iso.stat().st_size / 2**20
    cold_s = statistics.median(cold)
    print(f"\nrevive benchmark, Debian guest ({manifest['suite']}, "
          f"{len(manifest['packages'])} packages) — QEMU {meta['qemu']}, "
          f"{meta['accelerator']}, {meta['memory_mb']} MB, {meta['cpus']} CPU, "
          f"save {meta['save_method']}, medians of {args.runs}\n")
    print("| measure | seconds |\n|---|---|")
    print(f"| root filesystem (mmdebstrap{'' if fresh else ', cached: time when made'}) "
          f"| {mmdebstrap:.1f} |")
    for stage, seconds in stage_times.items():
        extra = f" ({iso_mib:.0f} MiB)" if stage == "iso" else ""
        print(f"| {stage} (doit){extra} | {seconds:.1f} |")
    print(f"| install, in the guest (base.json) | {base['seconds']:.1f} |")
    print(f"| snapshot: boot → SSH, save | {meta['timings']['boot_to_ssh']:.1f}, "
          f"{meta['timings']['save']:.2f} |")
    print(f"| cold boot → first SSH command answered | {cold_s:.2f} |")
    for channel, seconds in warm.items():
        print(f"| revive → first command answered over {channel} | {seconds:.2f} "
              f"({cold_s / seconds:.1f}× faster) |")
    if args.no_build:
        return
    print(f"| build:hello wall time (doit), exit {result['exit_code']} | {build_wall:.1f} |")
    print(f"| build:hello in the guest: command, revive | {result['timings']['command']:.1f}, "
          f"{result['timings']['revive']:.2f} |")


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print(f"\n(whole benchmark: {time.monotonic() - start:.0f} s)")
