#!/usr/bin/env python3
"""Peak memory of the doit process against the size of a build's output.

A throwaway tiny-guest project gets its snapshot, then two builds print
10 MB and 500 MB to stdout; for each, the doit process's peak resident set
(VmHWM from /proc, polled while it runs: QEMU's memory is not in it) is
printed with the ratio between them. Build output is streamed to the log,
so the two peaks should be within 20% of each other.

    flock /tmp/revive-qemu.lock .venv/bin/python bench/output_memory.py [--sizes 10,500]
"""

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(REPO))
from bench.measure import doit_with_peak  # noqa: E402
from tests import configs  # noqa: E402


def config(sizes: "list[int]") -> dict:
    """A tiny-guest project with one build per size, printing that many MB."""
    return configs.tiny("revive-bench", builds={
        f"out{mb}": configs.build("yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  f" | head -c {mb}000000", timeout="30m")
        for mb in sizes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,500", help="output sizes in MB")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="revive-bench-") as tmp:
        project = Path(tmp)
        (project / "src").mkdir()
        configs.write(project, config(sizes))
        seconds, _ = doit_with_peak(project, "snapshot")
        print(f"snapshot ready in {seconds:.0f} s")
        print(f"{'output':>10} {'seconds':>8} {'MB/s':>6} {'peak RSS of doit':>17}")
        peaks = {}
        for mb in sizes:
            seconds, peak = doit_with_peak(project, f"build:out{mb}")
            size = (project / "artifacts" / "builds" / f"out{mb}" / "log").stat().st_size
            assert size == mb * 1000000, size
            peaks[mb] = peak
            print(f"{mb:>7} MB {seconds:>8.1f} {mb / seconds:>6.1f} {peak / 1024:>14.1f} MB")
        low, high = peaks[sizes[0]], peaks[sizes[-1]]
        print(f"peak at {sizes[-1]} MB / peak at {sizes[0]} MB = {high / low:.2f} "
              f"({'within' if high <= low * 1.2 else 'NOT within'} 20%)")


if __name__ == "__main__":
    main()
