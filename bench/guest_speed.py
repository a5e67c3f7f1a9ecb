"""The `guest-speed` part of bench/revive_vs_boot.py: what a build's command
costs over each channel, and what a build costs around it, A/B against a
baseline commit (main by default) in the same run on the same snapshot.

For each of --runs rounds, interleaved (the order of A and B alternates):
- a build (``revive.machine.revive.run_build``, as `doit build` runs it) of
  a CPU-bound command and of a small job (examples/hello's build.sh ten
  times), by the baseline's code and by this tree's, each in a process of
  its own that imports only that tree;
- the same commands over SSH (this tree; the SSH channel is the same code
  in both);
- the same commands in a copy the host never talks to while they run:
  started through the agent, the host waits for a file on the stream share
  (inotify, no guest work) — the floor a channel can reach — and over an
  SSH session into that same copy (the SSH channel's own cost, apart from
  the copy's);
- a build of `true` by each tree: its fixed cost (result.json total − the
  command's time inside the guest), beside the floor (QEMU start + state load, the agent's first
  answer, one first process in the guest; and, when the snapshot has a
  resident runner, the same through it: QEMU start + state load, its shell
  running /bin/true, then a line on the serial console the host watches;
  and, in another copy, a build's whole guest side for `true` the same
  way: what the fixed cost adds to the floor in the guest, the rest being
  the host's).

Both trees are byte-compiled first: each build is a process of its own,
as `doit build:NAME` is, and where PYTHONDONTWRITEBYTECODE is set its
lazy imports would otherwise be compiled inside the build's time.

Every command's own time is read inside the guest (/proc/uptime before and
after), so the channel's work during the command is what differs.
"""

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TIMED = 'read a _ </proc/uptime; {cmd}; read b _ </proc/uptime; echo "GUEST $a $b"'
COMMANDS = {
    "cpu": "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
    "hello x10": "for n in 1 2 3 4 5 6 7 8 9 10; do sh /mnt/src/build.sh >/dev/null; done",
    "true": "true",
}

# Run in a process that imports one tree's revive only.
RUNNER = r"""
import json, sys
tree, artifacts, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, tree)
from pathlib import Path
try:
    from revive.machine.job import BuildRequest, run_build
except ImportError:                      # before the machine object (c8f6203)
    from revive.machine.revive import BuildRequest, run_build
req = BuildRequest(name=spec["name"], command=spec["command"], env={}, outputs=(),
                   timeout=600, shares={k: Path(v) for k, v in spec["shares"].items()},
                   revive_timeout=60)
out, work = Path(spec["out"]), Path(spec["work"])
res = run_build(Path(artifacts), req, key=Path(artifacts) / "keys" / "id_ed25519",
                out=out, work=work, logs=Path(artifacts) / "logs")
print(json.dumps(res))
"""


def guest_seconds(text: str, what: str = "") -> float:
    found = re.search(r"GUEST ([0-9.]+) ([0-9.]+)", text)
    if found:
        return float(found.group(2)) - float(found.group(1))
    raise SystemExit(f"{what}: no GUEST line in the command's output: {text[-1000:]!r}")


def baseline_tree(rev: str, into: Path) -> "tuple[Path, str]":
    """The baseline commit's files (git archive), and its short hash."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                            check=True, capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into, commit


def compiled(tree: Path) -> None:
    """Byte-compile a tree's Python files, as an install or a first run does:
    each bench build is a fresh process, and where PYTHONDONTWRITEBYTECODE
    is set (this sandbox sets it) it would otherwise compile every module a
    build imports lazily (the guest kind's, ~0.1 s) inside the build's time."""
    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    str(tree / "revive"), str(tree / "tasks")], check=True,
                   stdout=subprocess.DEVNULL)


def build_with(tree: Path, artifacts: Path, name: str, command: str, src: Path,
               tmp: Path) -> dict:
    out = tmp / "out"
    work = tmp / "work"
    for folder in (out, work):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir(parents=True)
    spec = {"name": name, "command": command, "shares": {"src": str(src)},
            "out": str(out), "work": str(work)}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tree), str(artifacts),
                           json.dumps(spec)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"bench build {name} with {tree} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["guest"] = guest_seconds((out / "log").read_text(errors="replace"),
                                    f"build {command!r} by {tree}")
    return result


def with_sources(work: Path) -> Path:
    """A fresh ``work``; the bench's copies share ``work/in/NAME`` for each
    share, and src holds examples/hello's files."""
    from revive_vs_boot import fresh
    fresh(work)
    src = work / "in" / "src"
    src.mkdir(parents=True)
    for item in (REPO / "examples" / "hello").iterdir():
        shutil.copy(item, src / item.name)
    return work


def over_ssh(paths, meta, cfg, work: Path, command: str) -> float:
    from revive_vs_boot import revive
    with_sources(work)
    with revive(paths, meta, name="bench-ssh", work=work, timeout=cfg.timeouts.revive,
                channel="ssh") as machine:
        machine.after_revive()
        out = []
        result = machine.run(command, timeout=600, sink=out.append)
        assert result.exit_code == 0, result
        return guest_seconds(b"".join(out).decode(errors="replace") + result.output,
                             f"ssh {command!r}")


def unwatched(paths, meta, cfg, work: Path, command: str,
              ssh_first: bool) -> "tuple[float, float]":
    """The command in a revived copy that nothing asks while it runs: one
    guest-exec, then the host waits on its own side of the stream share;
    and the same command over an SSH session into that same copy (before
    or after, alternating by round): what the SSH channel itself costs,
    apart from the copy. Seconds inside the guest, unwatched and over SSH."""
    from revive.core.dirwatch import DirWatch
    from revive.channel import agent
    from revive_vs_boot import revive
    with_sources(work)
    with revive(paths, meta, name="bench-unwatched", work=work, timeout=cfg.timeouts.revive,
                channel="agent") as machine:
        machine.after_revive()
        stream = work / "agent-stream"
        done = stream / "done"
        script = (f"{agent.mount_stream_command()} || exit 125; ( {command} ) "
                  f">{agent.STREAM_GUEST}/log 2>&1; mv {agent.STREAM_GUEST}/log "
                  f"{agent.STREAM_GUEST}/done")

        def alone() -> float:
            with DirWatch(stream) as watch:
                machine.channel.agent.call("guest-exec", path="/bin/sh", arg=["-c", script])
                deadline = time.monotonic() + 600
                while not done.exists():
                    if machine.dead() or time.monotonic() > deadline:
                        raise SystemExit(f"unwatched command did not finish: "
                                         f"{machine.dead() or 'not within 600 s'}")
                    watch.wait(0.5)
            return guest_seconds(done.read_text(errors="replace"), f"unwatched {command!r}")

        def over() -> float:
            # Its own connection: none is open while the unwatched one runs.
            with machine.ssh() as session:
                result = session.run(command, timeout=600)
            if result.exit_code != 0:
                raise SystemExit(f"ssh in the unwatched copy: {result}")
            return guest_seconds(result.output, f"ssh in the unwatched copy {command!r}")

        if ssh_first:
            by_ssh = over()
            return alone(), by_ssh
        return alone(), over()


def floor(paths, meta, cfg, work: Path) -> "dict[str, float]":
    """QEMU start + state load, the agent's first answer, one first process."""
    from revive_vs_boot import fresh
    from revive.machine import Stopwatch
    fresh(work)
    shares = {}
    for share in meta["shares"]:
        shares[share] = work / "in" / share
        shares[share].mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    with _copy(paths, cfg, work, shares, "bench-floor", watch) as machine:
        start = time.monotonic()
        machine.launch()
        if machine.channel.runner is not None:
            machine.channel.drop_runner()   # the agent's own floor: it answers a sync
        machine.connect()
        first = time.monotonic()
        machine.check("true")
        end = time.monotonic()
    floors = {"qemu start + state load": watch.phases["revive"],
              "agent answers": watch.phases["connect"], "first process": end - first,
              "floor": end - start}
    return {**floors, **runner_floor(paths, meta, cfg, work, shares)}


RUNNER_MARK = "REVIVE-RUNNER-FLOOR-END"


def _copy(paths, cfg, work: Path, shares, name: str, watch):
    from revive.machine import Machine
    return Machine.revive(paths.snapshot, artifacts=paths.artifacts, name=name, shares=shares,
                          key=paths.key, work=work, logs=paths.logs,
                          timeout=cfg.timeouts.revive, watch=watch)


def runner_floor(paths, meta, cfg, work: Path, shares) -> "dict[str, float]":
    """The same through the resident runner, when the snapshot has one: its
    shell runs one first process (/bin/true: fork and exec, as the agent's
    `sh` is) and then writes a line on the serial console, which the host
    watches in the console's log file (no guest work: QEMU's VSERPORT_CHANGE
    event of the port's close is held back up to 1 s). And in a second copy
    a build's whole guest side for `true` (the wrapper a build sends: the
    stream share's mount, the clock, the randomness, the shares' mounts,
    the command's subshell, its files on the share), ended by the same
    line: what the fixed cost adds to the floor inside the guest, apart
    from the host's side (noticing NAME.done, collecting, QEMU's end).
    {} for a snapshot without a runner."""
    from revive.channel import agent
    if agent.runner_pid(meta) is None:
        return {}
    floor = _through_runner(paths, cfg, work, shares, lambda machine: "/bin/true")
    build = _through_runner(paths, cfg, work, shares, lambda machine: _marked(agent._wrapper(
        "true", "bench", machine.kind.after_revive(machine.shares, time.time(), machine.trees),
        fresh=True, mount=machine.kind.program("mount"))))
    return {"runner: qemu start + state load": floor["revive"],
            "runner: first process": floor["first"], "runner: floor": floor["all"],
            "runner: a build's guest side for `true`": build["first"],
            "runner: floor + a build's guest side": build["all"]}


def _marked(wrapper: str) -> str:
    """The wrapper with the runner's line on the console before its last
    `exit` (not an EXIT trap: the wrapper sets and clears its own)."""
    last = "; exit $rc"
    if not wrapper.endswith(last):
        raise SystemExit(f"the build's wrapper no longer ends with {last!r}: {wrapper[-200:]!r}")
    return wrapper[:-len(last)] + f"; echo {RUNNER_MARK} >/dev/console{last}"


def _through_runner(paths, cfg, work: Path, shares, script_for) -> "dict[str, float]":
    from revive.machine import Stopwatch
    watch = Stopwatch()
    with _copy(paths, cfg, work, shares, "bench-floor-runner", watch) as machine:
        start = time.monotonic()
        machine.launch()
        script = script_for(machine)   # after launch: a big share's image is known then
        first = time.monotonic()
        machine.channel.runner.send(f"{script}; echo {RUNNER_MARK} >/dev/console; exit 0")
        deadline = first + 60
        while RUNNER_MARK not in machine.qemu.serial_log.read_text(errors="replace"):
            if machine.dead() or time.monotonic() > deadline:
                raise SystemExit(f"the runner's {script!r} did not end: {machine.dead()}")
            time.sleep(0.002)
        end = time.monotonic()
    return {"revive": watch.phases["revive"], "first": end - first, "all": end - start}


def guest_speed(paths, meta, cfg, runs: int, baseline: str, project: Path) -> str:
    src = project / "examples" / "hello"
    rows: "dict[str, list[float]]" = {}
    fixed: "dict[str, list[float]]" = {}
    phases: "dict[str, list[dict]]" = {}
    floors = []

    def add(key, value):
        rows.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="revive-guest-speed-") as tmp:
        tmp = Path(tmp)
        old, commit = baseline_tree(baseline, tmp / "baseline")
        trees = {f"agent, {commit} (baseline)": old, "agent, this tree": REPO}
        for tree in trees.values():
            compiled(tree)
        work = paths.work / "bench" / "speed"
        for i in range(runs):
            order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
            for label, command in COMMANDS.items():
                timed = TIMED.format(cmd=command)
                for who, tree in order:
                    result = build_with(tree, paths.artifacts, "bench", timed, src, tmp)
                    t = result["timings"]
                    if label == "true":
                        # The command's own time as the guest measured it, for
                        # both trees (the baseline's "command" is the host's).
                        fixed.setdefault(who, []).append(t["total"] - result["guest"])
                        phases.setdefault(who, []).append(t)
                    else:
                        add((label, who), result["guest"])
                if label == "true":
                    continue
                add((label, "ssh"), over_ssh(paths, meta, cfg, work, timed))
                alone, by_ssh = unwatched(paths, meta, cfg, work, timed, ssh_first=i % 2 == 1)
                add((label, "unwatched (floor)"), alone)
                add((label, "ssh into the unwatched copy"), by_ssh)
            floors.append(floor(paths, meta, cfg, work))
    lines = [f"\n| command, seconds inside the guest (median of {runs}) | "
             + " | ".join(k for k in (trees.keys()) ) + " | ssh | ssh into the unwatched copy"
             " | unwatched (floor) |",
             "|---|---|---|---|---|---|"]
    for label in COMMANDS:
        if label == "true":
            continue
        cells = [statistics.median(rows[(label, who)])
                 for who in [*trees, "ssh", "ssh into the unwatched copy", "unwatched (floor)"]]
        base = cells[-1]
        lines.append(f"| {label} | " + " | ".join(f"{c:.2f} ({c / base:.2f}×)" for c in cells)
                     + " |")
    lines.append(f"\n| build of `true` (median of {runs}) | fixed cost (total − command in "
                 "the guest), s |"
                 "\n|---|---|")
    for who, values in fixed.items():
        lines.append(f"| {who} | {statistics.median(values):.3f} |")
    lines.append(f"\n| floor, this tree's code (median of {runs}) | seconds |\n|---|---|")
    for key in floors[0]:
        lines.append(f"| {key} | {statistics.median(f[key] for f in floors):.3f} |")
    for who, runs_t in phases.items():
        mid = sorted(runs_t, key=lambda t: t["total"] - t["command"])[len(runs_t) // 2]
        lines.append(f"\n{who}: phases of the median `true` build: {json.dumps(mid)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit("run through bench/revive_vs_boot.py --parts guest-speed")
