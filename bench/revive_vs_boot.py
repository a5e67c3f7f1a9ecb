#!/usr/bin/env python3
"""Revive vs cold boot and the other ways back, measured in one run on a
throwaway tiny-guest project (same guest, same machine).

Prints each stage's time (every doit stage run from scratch), then one table
of launch → first command answered (medians of --runs) with ratios against
cold boot: cold boot; QEMU's internal snapshot (savevm, then -loadvm); the
old nixpkgs Windows builder's gzip stream; revive's zstd and file methods,
each over SSH and over the guest agent. Then 8 builds of a CPU-bound command
(~5 s) under `doit -n 1` against `doit -n 2`, and the host memory (sum of
PSS) of 4 concurrent copies revived with `file` against 2 with `zstd`.

    .venv/bin/python bench/revive_vs_boot.py [--runs 5]
"""

import argparse
import json
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.common import Paths  # noqa: E402
from revive.config import load  # noqa: E402
from revive.core.files import remove  # noqa: E402
from revive.core.proc import run  # noqa: E402
from revive.core.wait import wait_for  # noqa: E402
from revive.channel import agent, ssh  # noqa: E402
from revive.machine import Machine  # noqa: E402
from revive.qemu import launch_with_port, saved  # noqa: E402

agent_values = agent.argv_values


def revive(paths, meta, *, name: str, work: Path, timeout: float,
           channel: "str | None" = None) -> Machine:
    """A copy of the snapshot up to its first answer over ``channel`` (the
    snapshot's own by default), without mounting shares; the caller closes it."""
    shares = {}
    for share in meta["shares"]:
        shares[share] = work / "in" / share
        shares[share].mkdir(parents=True, exist_ok=True)
    machine = Machine.revive(paths.snapshot, artifacts=paths.artifacts, name=name,
                             shares=shares, key=paths.key, work=work, logs=paths.logs,
                             timeout=timeout, channel=channel)
    try:
        machine.launch()
        machine.connect()
    except BaseException:
        machine.close()
        raise
    return machine

STAGES = ["keys", "payload", "iso", "floppy", "install", "snapshot", "build"]
BUILDS = 8


def doit(project: Path, *args: str) -> float:
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(project), *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start


def make_project(root: Path, method: str, loops: int = 0) -> Path:
    shutil.copytree(REPO / "examples", root / "examples")
    text = (REPO / "config.toml").read_text().replace('save = "auto"', f'save = "{method}"')
    text = text.replace('memory = "512M"', 'memory = "256M"')
    for i in range(BUILDS if loops else 0):
        text += (f'\n[builds.cpu{i}]\ncommand = "i=0; while [ $i -lt {loops} ]; do '
                 f'i=$((i+1)); done"\ntimeout = "10m"\n')
    (root / "config.toml").write_text(text)
    return root


def fresh(work: Path) -> Path:
    remove(work)
    work.mkdir(parents=True)
    return work


def ssh_answer(paths, meta, machine, port, timeout) -> None:
    with ssh.connect(port, user="root", key_file=paths.key, host_key=meta["host_key"],
                     timeout=timeout, alive=machine.dead) as session:
        session.check("true")


def launch(paths, meta, work: Path, name: str, extra_args=(), disk=None, **values):
    """A QEMU with the snapshot's device model (agent socket and shares in ``work``)."""
    base = {"artifacts": paths.artifacts, "disk": disk or work / "disk.qcow2",
            "ram": work / "ram", "ram-share": "on", "smb": work,
            **{f"share.{n}": work for n in meta["shares"]}, **agent_values(work), **values}
    template = meta["argv"] + list(extra_args)
    return launch_with_port(lambda p: saved.fill(template, {**base, "port": p}),
                            name=name, logdir=paths.logs,
                            binary=saved.arch_of(meta).qemu)


def cold_boot(paths, meta, cfg, work) -> float:
    """Launch → first SSH command answered, booting the installed disk."""
    fresh(work)
    start = time.monotonic()
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", paths.base,
         work / "disk.qcow2"])
    machine, port = launch(paths, meta, work, "bench-cold")
    with machine:
        ssh_answer(paths, meta, machine, port, cfg.timeouts.boot)
        return time.monotonic() - start


def revived(paths, meta, cfg, work, channel: str) -> float:
    """Revive → first command answered over ``channel`` (as a build does)."""
    fresh(work)
    start = time.monotonic()
    with revive(paths, meta, name="bench-revive", work=work,
                timeout=cfg.timeouts.revive, channel=channel) as machine:
        machine.check("true")
        return time.monotonic() - start


@contextlib.contextmanager
def a_running_copy(paths, meta, cfg, work):
    """A revived copy whose overlay stays in ``work`` for other tools to save."""
    with revive(paths, meta, name="bench-source", work=work,
                timeout=cfg.timeouts.revive) as machine:
        machine.disconnect()
        yield machine.qemu


def prepare_loadvm(paths, meta, cfg, work: Path) -> Path:
    """savevm into a qcow2 overlay of a running copy (zstd snapshot: plain RAM)."""
    fresh(work)
    with a_running_copy(paths, meta, cfg, work) as machine:
        machine.cmd("human-monitor-command", **{"command-line": "savevm bench"})
    disk = work.parent / "loadvm.qcow2"
    os.replace(work / "disk.qcow2", disk)
    return disk


def loadvm(paths, meta, cfg, work, disk: Path) -> float:
    fresh(work)
    start = time.monotonic()
    machine, port = launch(paths, meta, work, "bench-loadvm", ["-loadvm", "bench"], disk=disk)
    with machine:
        ssh_answer(paths, meta, machine, port, cfg.timeouts.revive)
        return time.monotonic() - start


def prepare_gzip(paths, meta, cfg, work: Path) -> "tuple[Path, Path]":
    """The nixpkgs Windows builder's save: migrate "exec:gzip -c > state.gz"."""
    fresh(work)
    state = work.parent / "state.gz"
    with a_running_copy(paths, meta, cfg, work) as machine:
        machine.cmd("stop")
        machine.cmd("migrate", uri=f"exec:gzip -c > {state}")
        wait_for(lambda: machine.cmd("query-migrate").get("status") == "completed",
                 timeout=600, what="gzip save", alive=machine.dead, interval=0.05)
    disk = work.parent / "gzip.qcow2"
    os.replace(work / "disk.qcow2", disk)
    return state, disk


def gzip_revive(paths, meta, cfg, work, state: Path, disk: Path) -> float:
    fresh(work)
    start = time.monotonic()
    machine, port = launch(paths, meta, work, "bench-gzip",
                           ["-incoming", f"exec:gzip -dc {state}"], disk=disk)
    with machine:
        wait_for(lambda: machine.status() in ("paused", "running"), timeout=120,
                 what="gzip revive", alive=machine.dead, interval=0.01)
        if machine.status() == "paused":
            machine.cmd("cont")
        ssh_answer(paths, meta, machine, port, cfg.timeouts.revive)
        return time.monotonic() - start


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def concurrent_pss(paths, meta, cfg, root: Path, copies: int) -> float:
    """Host memory (sum of PSS, MiB) of ``copies`` revived copies, each having
    answered a command."""
    running = []
    try:
        for i in range(copies):
            work = fresh(root / f"pss-{i}")
            machine = revive(paths, meta, name=f"bench-pss-{i}", work=work,
                             timeout=cfg.timeouts.revive)
            running.append(machine)
            machine.check("true")
        time.sleep(1)
        return sum(pss_kb(m.qemu.proc.pid) for m in running) / 1024
    finally:
        for machine in running:
            machine.close()


# Two loop counts for calibrate(), about 1 s and 5 s here. 20,000 and
# 60,000 (about 1.2 s apart) made commands of 7.0 s in one run: the
# narrower the gap, the more one run's own spread moves the slope.
LOOPS_SHORT, LOOPS_LONG = 30000, 150000


def calibrate(paths, meta, cfg, work) -> int:
    """Loop iterations of the busybox shell that take about 5 s in the
    guest: the slope between two loop counts, so that the run's own fixed
    cost (the prelude, the channel) is not counted as loop time (one count
    divided by its run's time made 5 s commands that ran 2.3-3.3 s)."""
    fresh(work)
    with revive(paths, meta, name="bench-calibrate", work=work,
                timeout=cfg.timeouts.revive) as machine:
        seconds = {}
        for n in (LOOPS_SHORT, LOOPS_LONG):
            # With a sink: the builds' own way (output streamed, the guest
            # not asked while the command runs), so the calibration runs as fast.
            seconds[n] = machine.run(f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done",
                                     timeout=120, sink=lambda chunk: None).seconds
        per_loop = (seconds[LOOPS_LONG] - seconds[LOOPS_SHORT]) / (LOOPS_LONG - LOOPS_SHORT)
        return max(1000, int(5 / per_loop)) if per_loop > 0 else 100000


def med(values) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parts", default="ways,builds",
                        help="ways: the table of ways back; builds: fixed cost, "
                             "-n 1 vs -n 2 and memory; guest-speed: a command's cost "
                             "over each channel and the fixed cost, A/B against "
                             "--baseline (bench/guest_speed.py)")
    parser.add_argument("--tree-sizes", default="1000,50000",
                        help="trees: the numbers of files of the trees measured")
    parser.add_argument("--no-guest-trees", action="store_true",
                        help="trees: only doit's no-op, not the reading in the guest")
    parser.add_argument("--baseline", default="main",
                        help="the commit guest-speed compares this tree against")
    parser.add_argument("--project", type=Path,
                        help="guest-speed and trees: an existing tiny project with a snapshot "
                             "(its examples/hello is the shared folder) instead of a "
                             "new one built from scratch")
    args = parser.parse_args()
    runs = args.runs
    parts = set(args.parts.split(","))
    sizes = [int(n) for n in args.tree_sizes.split(",")]
    if args.project is not None:
        if not parts <= {"guest-speed", "trees"}:
            sys.exit("--project goes with --parts guest-speed and trees only")
        os.environ["REVIVE_CONFIG"] = str(args.project / "config.toml")
        cfg = load(args.project / "config.toml")
        paths = Paths(cfg)
        meta = saved.read_meta(paths.snapshot)
        print(f"QEMU {meta['qemu']}, {meta['accelerator']}, {meta['memory_mb']} MB tiny guest")
        print(extra_parts(parts, paths, meta, cfg, args, sizes, args.project))
        return
    with tempfile.TemporaryDirectory(prefix="revive-bench-") as tmp:
        tmp = Path(tmp)
        file_project = make_project(tmp / "file", "file")
        stages = {stage: doit(file_project, stage) for stage in STAGES}
        zstd_project = make_project(tmp / "zstd", "zstd")
        shutil.copytree(file_project / "artifacts", zstd_project / "artifacts", symlinks=True)
        for stale in ("snapshot", "builds", "work"):
            remove(zstd_project / "artifacts" / stale)
        stages["snapshot (zstd)"] = doit(zstd_project, "snapshot")

        def ctx(project):
            cfg = load(project / "config.toml")
            paths = Paths(cfg)
            return cfg, paths, saved.read_meta(paths.snapshot)
        fcfg, fpaths, fmeta = ctx(file_project)
        zcfg, zpaths, zmeta = ctx(zstd_project)
        fwork, zwork = fpaths.work / "bench" / "w", zpaths.work / "bench" / "w"

        rows = {}
        if "ways" in parts:
            ways(rows, runs, zpaths, zmeta, zcfg, zwork, fpaths, fmeta, fcfg, fwork)
        speed = extra_parts(parts, fpaths, fmeta, fcfg, args, sizes, file_project)
        if "builds" not in parts:
            print_ways(stages, rows, fmeta, runs)
            print(speed)
            return
        fixed = []
        for _ in range(runs):
            doit(file_project, "forget", "build:hello")
            doit(file_project, "build:hello")
            t = json.loads((fpaths.builds / "hello" / "result.json").read_text())["timings"]
            fixed.append((t["total"] - t["command"], t))
        fixed.sort(key=lambda f: f[0])
        fixed_cost, fixed_phases = fixed[len(fixed) // 2]

        # 8 CPU-bound builds, -n 1 against -n 2.
        loops = calibrate(fpaths, fmeta, fcfg, fwork)
        text = make_project(tmp / "cpu-cfg", "file", loops) / "config.toml"
        shutil.copy(text, file_project / "config.toml")
        names = [f"build:cpu{i}" for i in range(BUILDS)]
        parallel = {}
        for n in ("1", "2"):
            doit(file_project, "forget", *names)
            parallel[n] = doit(file_project, "-n", n, *names)
        command_s = med([json.loads(
            (fpaths.builds / f"cpu{i}" / "result.json").read_text())["timings"]["command"]
            for i in range(BUILDS)])

        pss_file = concurrent_pss(fpaths, fmeta, fcfg, fpaths.work / "bench", 4)
        pss_zstd = concurrent_pss(zpaths, zmeta, zcfg, zpaths.work / "bench", 2)

    print_ways(stages, rows, fmeta, runs)
    print(speed)
    print(f"build fixed cost (result.json total − command, build:hello, agent, file, "
          f"median of {runs}): {fixed_cost:.3f} s; that run's phases: {fixed_phases}")
    print(f"\n| {BUILDS} builds of a CPU-bound command ({command_s:.1f} s each in the guest) "
          f"| seconds |\n|---|---|")
    print(f"| doit -n 1 | {parallel['1']:.1f} |\n| doit -n 2 | {parallel['2']:.1f} |\n"
          f"| speed-up | {parallel['1'] / parallel['2']:.2f}× |")
    print(f"\n| concurrent copies (agent, each answered a command) | host memory, sum of PSS |"
          f"\n|---|---|\n| 4 × `file` | {pss_file:.0f} MiB |\n| 2 × `zstd` | {pss_zstd:.0f} MiB |")


def extra_parts(parts, paths, meta, cfg, args, sizes, project: Path) -> str:
    """guest-speed (bench/guest_speed.py) and trees (bench/trees.py)."""
    out = []
    if "guest-speed" in parts:
        import guest_speed
        out.append(guest_speed.guest_speed(paths, meta, cfg, args.runs, args.baseline, project))
    if "trees" in parts:
        import trees
        with tempfile.TemporaryDirectory(prefix="revive-trees-") as tmp:
            out.append(trees.trees(paths, meta, cfg, args.runs, args.baseline, project, sizes,
                                   not args.no_guest_trees, Path(tmp)))
    return "\n".join(out)


def ways(rows, runs, zpaths, zmeta, zcfg, zwork, fpaths, fmeta, fcfg, fwork) -> None:
    """Launch → first command answered, each way back."""
    rows["cold boot"] = med([cold_boot(zpaths, zmeta, zcfg, zwork) for _ in range(runs)])
    disk = prepare_loadvm(zpaths, zmeta, zcfg, zwork)
    rows["QEMU internal snapshot (savevm, -loadvm), SSH"] = med(
        [loadvm(zpaths, zmeta, zcfg, zwork, disk) for _ in range(runs)])
    state, disk = prepare_gzip(zpaths, zmeta, zcfg, zwork)
    rows["nixpkgs way (exec:gzip), SSH"] = med(
        [gzip_revive(zpaths, zmeta, zcfg, zwork, state, disk) for _ in range(runs)])
    for method, (cfg, paths, meta, work) in {
            "zstd": (zcfg, zpaths, zmeta, zwork), "file": (fcfg, fpaths, fmeta, fwork)}.items():
        for channel in ("ssh", "agent"):
            rows[f"revive `{method}`, {channel}"] = med(
                [revived(paths, meta, cfg, work, channel) for _ in range(runs)])


def print_ways(stages, rows, fmeta, runs) -> None:
    print(f"\nrevive benchmark — QEMU {fmeta['qemu']}, {fmeta['accelerator']}, "
          f"{fmeta['memory_mb']} MB tiny guest, medians of {runs}\n")
    print("| stage (doit, from scratch) | seconds |\n|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.1f} |")
    if not rows:
        return
    cold = rows["cold boot"]
    print("\n| launch → first command answered | seconds | faster than cold boot |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {cold / seconds:.1f}× |")
    agent_file = rows["revive `file`, agent"]
    print(f"\n`file` over the agent vs the gzip stream: "
          f"{rows['nixpkgs way (exec:gzip), SSH'] / agent_file:.1f}×; vs -loadvm: "
          f"{rows['QEMU internal snapshot (savevm, -loadvm), SSH'] / agent_file:.1f}×")


if __name__ == "__main__":
    main()
