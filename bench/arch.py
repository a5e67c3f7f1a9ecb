#!/usr/bin/env python3
"""A guest kind per architecture, in one run on this machine: an empty
project to its first build (payload, install, snapshot, build; the
package cache warm), then launch → first command answered by a cold boot
of the installed disk (over SSH, as soon as dropbear or OpenSSH answers)
against a revive of the snapshot (over the guest agent, as a build does;
and over SSH), and a build's fixed cost (result.json: total − the
command), medians of --runs. One table; docs/benchmarks.md keeps it.

    /work/heavy .venv/bin/python bench/arch.py [--runs 5] [--arch ARCH ...]
    /work/heavy .venv/bin/python bench/arch.py --kind debian --arch arm64 [--hello]
    /work/heavy .venv/bin/python bench/arch.py --kind debian --arch arm64 --project DIR

--kind debian: examples/debian.toml with the arch (its own suite and
install timeout), the first build `uname -m` only (--hello: GNU hello's
too, the example's). --project: an existing project of one arch with a
snapshot and a `uname` build (tests/integration/test_debian_arch.py's),
no first build.
"""

import argparse
import json
import os
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

TINY = """
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
command = "uname -m > /mnt/xchg/uname.txt"
outputs = ["uname.txt"]
timeout = "2m"
"""

DEBIAN_BUILD = """
[builds.uname]
shares = {{ src = "{empty}" }}
command = "uname -m > /mnt/xchg/uname.txt"
outputs = ["uname.txt"]
timeout = "5m"
"""


def debian_config(arch: str, project: Path) -> str:
    """examples/debian.toml on ``arch``: the arch's default suite and
    install timeout, and the uname build."""
    lines = [l for l in (REPO / "examples/debian.toml").read_text().splitlines()
             if not l.startswith(('suite = "bookworm"', 'install = "20m"'))]
    text = "\n".join(lines).replace('kind = "debian"', f'kind = "debian"\narch = "{arch}"')
    (project / "empty").mkdir()
    return text + "\n" + DEBIAN_BUILD.format(empty=project / "empty")


def one(arch: str, runs: int, root: Path, kind: str = "tiny", hello: bool = False,
        project: "Path | None" = None) -> dict:
    first = None
    # The previous arch's project must not be this one's config (doit runs
    # below inherit the environment).
    os.environ.pop("REVIVE_CONFIG", None)
    if project is None:
        project = root / arch
        project.mkdir()
        text = TINY.format(arch=arch) if kind == "tiny" else debian_config(arch, project)
        (project / "config.toml").write_text(text)
        first = doit(project, "build" if hello else "build:uname")
    os.environ["REVIVE_CONFIG"] = str(project / "config.toml")
    cfg = load(project / "config.toml")
    assert cfg.guest_settings.arch == arch, cfg.guest_settings
    paths = Paths(cfg)
    # A project another tree built (its code at other paths) is remade up
    # to its snapshot by this tree's doit: before the first cold boot, not
    # by the first build below, so the host key read here stays the guest's.
    doit(project, "snapshot")
    meta_text = (paths.snapshot / "meta.json").read_text()
    meta = json.loads(meta_text)
    work = root / f"{arch}-work"
    cold, agent, ssh, fixed = [], [], [], []
    for _ in range(runs):
        cold.append(cold_boot(paths, meta, cfg, work))
        agent.append(revived(paths, meta, cfg, work, "agent"))
        ssh.append(revived(paths, meta, cfg, work, "ssh"))
        doit(project, "forget", "build:uname")
        doit(project, "build:uname")
        answer = (paths.builds / "uname/outputs/uname.txt").read_text().strip()
        assert answer == ARCHES[arch].uname, answer
        t = json.loads((paths.builds / "uname/result.json").read_text())["timings"]
        fixed.append(t["total"] - t["command"])
        if (paths.snapshot / "meta.json").read_text() != meta_text:
            sys.exit(f"{arch}: `doit build:uname` remade the snapshot during the bench; "
                     f"rerun it (see {paths.logs})")
    values = (("cold", cold), ("agent", agent), ("ssh", ssh), ("fixed", fixed))
    return {"arch": arch, "kind": kind, "first_build": first,
            **{k: statistics.median(v) for k, v in values},
            "ranges": {k: (min(v), max(v)) for k, v in values}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["arm64", "riscv64", "amd64"],
                        choices=sorted(ARCHES))
    parser.add_argument("--kind", choices=("tiny", "debian"), default="tiny")
    parser.add_argument("--hello", action="store_true",
                        help="debian: the first build is the example's GNU hello too")
    parser.add_argument("--project", type=Path,
                        help="an existing project (one --arch) with a snapshot and a "
                             "uname build; no first build")
    args = parser.parse_args()
    if args.project and len(args.arch) != 1:
        sys.exit("--project goes with one --arch")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-arch-") as tmp:
        for arch in args.arch:
            start = time.monotonic()
            rows.append(one(arch, args.runs, Path(tmp), args.kind, args.hello,
                            args.project.resolve() if args.project else None))
            # Each arch's numbers as soon as it is done: a later arch's
            # failure does not lose them.
            print(f"{arch}: done in {time.monotonic() - start:.0f} s: {rows[-1]}",
                  file=sys.stderr)
    print(f"\n{args.kind} guest, medians of {args.runs}; launch → first command answered\n")
    print("| arch | empty project → first build | cold boot → SSH answer | "
          "revive → agent answer | revive → SSH answer | cold / revive (agent) | "
          "a build's fixed cost |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        first = "–" if r["first_build"] is None else f"{r['first_build']:.1f} s"
        print(f"| {r['arch']} | {first} | {r['cold']:.2f} s | "
              f"{r['agent']:.3f} s | {r['ssh']:.3f} s | {r['cold'] / r['agent']:.1f}× | "
              f"{r['fixed']:.2f} s |")
    print("\nranges (min–max): " + "; ".join(
        f"{r['arch']}: " + ", ".join(f"{k} {lo:.2f}–{hi:.2f} s"
                                     for k, (lo, hi) in r["ranges"].items())
        for r in rows))


if __name__ == "__main__":
    main()
