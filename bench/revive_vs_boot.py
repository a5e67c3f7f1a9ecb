#!/usr/bin/env python3
"""Revive vs cold boot, measured in one run, on a throwaway project.

Prints each stage's time (every doit stage run from scratch), then for each
save method: cold boot → first SSH command answered and revive → first SSH
command answered (medians of --runs), and their ratio.

    .venv/bin/python bench/revive_vs_boot.py [--runs 5] [--methods file,zstd]
"""

import argparse
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
from tasks.config import load  # noqa: E402
from tasks.core.files import remove  # noqa: E402
from tasks.core.proc import run  # noqa: E402
from tasks.machine import snapshot as snap  # noqa: E402
from tasks.machine.qemu import launch_with_port  # noqa: E402
from tasks.machine.revive import Stopwatch, revived as revived_copy  # noqa: E402
from tasks.remote import ssh  # noqa: E402

STAGES = ["keys", "payload", "iso", "floppy", "install", "snapshot", "build"]


def doit(project: Path, *args: str) -> float:
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(project), *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start


def make_project(root: Path, method: str) -> Path:
    shutil.copytree(REPO / "examples", root / "examples")
    text = (REPO / "config.toml").read_text().replace('save = "auto"', f'save = "{method}"')
    (root / "config.toml").write_text(text)
    return root


def cold_boot(paths: Paths, meta: dict, cfg, work: Path) -> float:
    """Launch → first SSH command answered, booting the installed disk the
    way the snapshot stage does."""
    remove(work)
    work.mkdir(parents=True)
    start = time.monotonic()
    overlay = work / "disk.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", paths.base, overlay])
    values = {"artifacts": paths.artifacts, "disk": overlay, "ram": work / "ram",
              "ram-share": "on", "smb": work, **{f"share.{n}": work for n in meta["shares"]}}
    machine, port = launch_with_port(lambda p: snap.fill(meta["argv"], {**values, "port": p}),
                                     name="bench-cold", logdir=paths.logs)
    with machine:
        with ssh.connect(port, user="root", key_file=paths.key, host_key=meta["host_key"],
                         timeout=cfg.timeouts.boot, alive=machine.dead) as session:
            session.check("true")
            seconds = time.monotonic() - start
    remove(work)
    return seconds


def revived(paths: Paths, meta: dict, cfg, work: Path) -> float:
    remove(work)
    work.mkdir(parents=True)
    start = time.monotonic()
    with revived_copy(paths.artifacts, name="bench-revive", work=work, logs=paths.logs,
                      shares={n: work for n in meta["shares"]}, key=paths.key,
                      revive_timeout=cfg.timeouts.revive, watch=Stopwatch()) as copy:
        copy.session.check("true")
        seconds = time.monotonic() - start
    remove(work)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--methods", default="file,zstd")
    args = parser.parse_args()
    methods = args.methods.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="revive-bench-") as tmp:
        stage_times = {}
        for i, method in enumerate(methods):
            project = make_project(Path(tmp) / method, method)
            if i == 0:
                for stage in STAGES:
                    stage_times[stage] = doit(project, stage)
            else:
                # Reuse the first project's install; only the snapshot differs.
                first = Path(tmp) / methods[0] / "artifacts"
                shutil.copytree(first, project / "artifacts", symlinks=True)
                for stale in ("snapshot", "builds"):
                    remove(project / "artifacts" / stale)
                stage_times[f"snapshot ({method})"] = doit(project, "snapshot")
            cfg = load(project / "config.toml")
            paths = Paths(cfg)
            meta = snap.read_meta(paths.snapshot)
            work = paths.work / "bench"
            cold = [cold_boot(paths, meta, cfg, work) for _ in range(args.runs)]
            warm = [revived(paths, meta, cfg, work) for _ in range(args.runs)]
            rows.append((method, meta, statistics.median(cold), statistics.median(warm),
                         sum((paths.snapshot / f).stat().st_blocks * 512
                             for f in snap.state_files(meta["save_method"]))))
    accel = rows[0][1]["accelerator"]
    print(f"\nrevive benchmark — QEMU {rows[0][1]['qemu']}, {accel}, "
          f"{rows[0][1]['memory_mb']} MB guest, medians of {args.runs}\n")
    print("| stage (doit, from scratch) | seconds |\n|---|---|")
    for stage, seconds in stage_times.items():
        print(f"| {stage} | {seconds:.1f} |")
    print("\n| save method | snapshot on disk | cold boot → SSH answer | "
          "revive → SSH answer | ratio |\n|---|---|---|---|---|")
    for method, meta, cold, warm, size in rows:
        print(f"| {method} | {size / 2**20:.0f} MiB | {cold:.2f} s | {warm:.2f} s | "
              f"{cold / warm:.1f}× |")


if __name__ == "__main__":
    main()
