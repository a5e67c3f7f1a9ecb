"""bench/debian.py --baseline REV: the Debian guest measured against REV's
code on this machine in the same run. Each side is driven by
bench/debian_side.py under its own Python, so each runs its own stages,
revive and doit; measurements alternate between the sides."""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "bench" / "debian_side.py"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def checkout(rev: str, into: Path) -> Path:
    """REV's tree (git archive: no worktree registered) with its own venv."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    subprocess.run(["python3", "-m",
                    "venv", str(into / ".venv")], check=True)
    subprocess.run([str(into / ".venv" / "bin" / "pip"), "install", "-q",
                    "--disable-pip-version-check", "-r", str(into / "requirements.txt")],
                   check=True)
    return into


class Side:
    def __init__(self, label: str, repo: Path, python: Path, project: Path, keep: Path):
        self.label, self.repo, self.python = label, repo, python
        self.project, self.keep = project, keep
        self.setup: dict = {}
        self.revive: dict[str, list[float]] = {}
        self.builds: list[dict] = []

    def run(self, *args: str) -> dict:
        proc = subprocess.run([str(self.python), str(DRIVER), str(self.repo),
                               str(self.project), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            sys.exit(f"{self.label}: {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n"
                     f"{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def channels(self) -> list[str]:
        return ["ssh", "agent"] if self.repo == REPO else ["ssh"]


def dump(sides: list[Side], path: Path | None) -> None:
    if path:
        path.write_text(json.dumps([{"label": s.label, "setup": s.setup, "revive": s.revive,
                                     "builds": s.builds} for s in sides], indent=1))


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "–"


def table(sides: list[Side], runs: int) -> None:
    print(f"\nDebian guest A/B, one run on this machine, medians "
          f"(revive ×{runs} per side and channel, hello builds as listed)\n")
    print("| measure | " + " | ".join(s.label for s in sides) + " |")
    print("|---|" + "---|" * len(sides))
    stages = list(dict.fromkeys(k for s in sides for k in s.setup.get("stages", {})))
    for stage in stages:
        print(f"| {stage} (doit, once) | "
              + " | ".join(f"{s.setup['stages'][stage]:.1f}" if stage in s.setup["stages"]
                           else "–" for s in sides) + " |")
    for channel in ("ssh", "agent"):
        print(f"| revive → first command over {channel} | "
              + " | ".join(f"{median(s.revive.get(channel, []))} "
                           f"({', '.join(f'{v:.2f}' for v in s.revive.get(channel, []))})"
                           if s.revive.get(channel) else "–" for s in sides) + " |")
    if not any(s.builds for s in sides):
        return
    print("| build:hello wall (doit) | "
          + " | ".join(f"{median([b['wall'] for b in s.builds])} "
                       f"({', '.join('%.0f' % b['wall'] for b in s.builds)})" for s in sides)
          + " |")
    print("| build:hello command in the guest | "
          + " | ".join(median([b["timings"].get("command", 0) for b in s.builds])
                       for s in sides) + " |")
    phases = list(dict.fromkeys(k for s in sides for b in s.builds for k in b["phases"]))
    for phase in phases:
        print(f"| hello phase: {phase} (guest uptime) | "
              + " | ".join(median([b["phases"][phase] for b in s.builds
                                   if phase in b["phases"]]) for s in sides) + " |")


def compare(rev: str, runs: int, builds: int, json_path: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="revive-bench-debian-ab-") as tmp:
        tmp = Path(tmp)
        short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                               check=True, capture_output=True, text=True).stdout.strip()
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              check=True, capture_output=True, text=True).stdout.strip()
        log(f"checking out {short} into {tmp / 'baseline'} with its own venv")
        base = checkout(rev, tmp / "baseline")
        keep = (json_path.parent if json_path else tmp) / "debian-ab-logs"
        sides = [Side(f"{short} (baseline)", base, base / ".venv" / "bin" / "python",
                      tmp / "project-baseline", keep / "baseline"),
                 Side(f"{head} (this tree)", REPO, Path(sys.executable),
                      tmp / "project-head", keep / "head")]
        for side in sides:
            log(f"{side.label}: stages")
            side.setup = side.run("setup")
            log(f"{side.label}: {side.setup['stages']}")
            dump(sides, json_path)
        for i in range(runs):
            for side in sides if i % 2 == 0 else sides[::-1]:
                for channel in side.channels():
                    seconds = side.run("revive", channel)["seconds"]
                    side.revive.setdefault(channel, []).append(seconds)
                    log(f"{side.label}: revive → first command over {channel} {seconds:.2f} s")
        dump(sides, json_path)
        for i in range(builds):
            for side in sides if i % 2 == 0 else sides[::-1]:
                out = side.run("build", str(side.keep / f"build{i}"))
                side.builds.append(out)
                log(f"{side.label}: build:hello {out['wall']:.1f} s, exit {out['exit_code']}, "
                    f"phases {out['phases']}")
                dump(sides, json_path)
        table(sides, runs)
