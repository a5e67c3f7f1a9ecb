#!/usr/bin/env python3
"""One side of bench/debian.py's A/B: run with that side's Python, it drives
that side's own code (its bench/debian.py and bench/revive_vs_boot.py, its
dodo.py) on a project folder and prints one JSON line. It imports nothing
of the tree it lives in, so the same driver serves the round-1 code and this
one.

    PYTHON bench/debian_side.py SIDE_REPO PROJECT setup
    PYTHON bench/debian_side.py SIDE_REPO PROJECT revive ssh|agent
    PYTHON bench/debian_side.py SIDE_REPO PROJECT build
"""

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Phase markers put into the hello build's command (the same text on both
# sides): the guest's uptime before each step, read back from the build log.
PHASES = [("tar -xf", "unpack"), ("../hello-*/configure", "configure"),
          ('make -j"$(nproc)"', "make"), ("make check", "check"), ("cp hello", "collect")]
MARK = "revive-bench-phase"


def side_module(repo: Path):
    """The side's bench/debian.py, imported from its own tree only."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p not in (here, "")]
    sys.path[:0] = [str(repo / "bench"), str(repo)]
    spec = importlib.util.spec_from_file_location("side_debian", repo / "bench" / "debian.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_meta(side, snapshot: Path) -> dict:
    keeper = getattr(side, "saved", None) or getattr(side, "snap")
    return keeper.read_meta(snapshot)


def mark_phases(config: Path) -> None:
    """Echo the guest's uptime before each step of the hello command."""
    lines = []
    for line in config.read_text().splitlines():
        for start, phase in PHASES:
            if line.startswith(start):
                lines.append(f'echo "{MARK} {phase} $(cut -d" " -f1 /proc/uptime)"')
        lines.append(line)
        if line.startswith("cp hello"):
            lines.append(f'echo "{MARK} end $(cut -d" " -f1 /proc/uptime)"')
    config.write_text("\n".join(lines) + "\n")


def phases(log: Path) -> dict:
    marks = [(m.group(1), float(m.group(2)))
             for m in re.finditer(rf"^{MARK} (\w+) ([0-9.]+)$", log.read_text(errors="replace"),
                                  re.M)]
    return {name: round(marks[i + 1][1] - t, 2) for i, (name, t) in enumerate(marks[:-1])}


def setup(side, project: Path) -> dict:
    project.mkdir(parents=True, exist_ok=True)
    side.make_project(project)
    mark_phases(project / "config.toml")
    stages = {stage: round(side.doit(project, stage), 1) for stage in side.STAGES}
    cfg = side.load(project / "config.toml")
    paths = side.Paths(cfg)
    meta = read_meta(side, paths.snapshot)
    return {"stages": stages, "qemu": meta.get("qemu"), "argv": meta.get("argv"),
            "boot_to_ssh": meta.get("timings", {}).get("boot_to_ssh"),
            "packages": (paths.artifacts / "payload" / "debian-packages.txt").read_text()
            if (paths.artifacts / "payload" / "debian-packages.txt").exists() else None}


def revive(side, project: Path, channel: str) -> dict:
    cfg = side.load(project / "config.toml")
    paths = side.Paths(cfg)
    meta = read_meta(side, paths.snapshot)
    work = paths.work / "bench"
    if "channel" in inspect.signature(side.revived).parameters:
        seconds = side.revived(paths, meta, cfg, work, channel)
    elif channel == "ssh":
        seconds = side.revived(paths, meta, cfg, work)
    else:
        sys.exit(f"this side has no {channel} channel")
    return {"seconds": seconds}


def build(side, project: Path, keep: Path) -> dict:
    forget = subprocess.run([sys.executable, "-m", "doit", "forget", "-f",
                             str(side.REPO / "dodo.py"), "-d", str(project), "build:hello"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=dict(os.environ,
                                     REVIVE_CACHE=str(side.REPO / "artifacts" / "cache")))
    if forget.returncode != 0:
        sys.exit(f"doit forget build:hello failed:\n{forget.stdout}\n{forget.stderr}")
    wall = side.doit(project, "build:hello")
    cfg = side.load(project / "config.toml")
    paths = side.Paths(cfg)
    folder = paths.builds / "hello"
    result = json.loads((folder / "result.json").read_text())
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "log", keep / "log")
    shutil.copy(folder / "result.json", keep / "result.json")
    return {"wall": wall, "exit_code": result.get("exit_code"),
            "timings": result.get("timings", {}), "phases": phases(folder / "log"),
            "channel": result.get("channel")}


def main() -> None:
    repo, project, command = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3]
    side = side_module(repo)
    start = time.monotonic()
    if command == "setup":
        out = setup(side, project)
    elif command == "revive":
        out = revive(side, project, sys.argv[4])
    elif command == "build":
        out = build(side, project, Path(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
    out["driver_seconds"] = time.monotonic() - start
    print(json.dumps(out))


if __name__ == "__main__":
    main()
