#!/usr/bin/env python3
"""What the channel costs a gcc-bound command on the Debian guest, in one
revived copy: the same loop of gcc runs (hello's configure is mostly that),
timed by the guest's own uptime, over the agent as builds run it (the host
polls guest-exec-status, backing off to every 0.1 s), over the agent polled
only every 2 s, and over SSH; interleaved, --rounds times.

    .venv/bin/python bench/debian_channel.py PROJECT [--rounds 3] [--compiles 20]

PROJECT: a Debian project whose snapshot stage has run (bench/debian.py
--baseline leaves none behind; make one with `cp examples/debian.toml
P/config.toml && .venv/bin/doit -d P snapshot`).
"""

import argparse
import statistics
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from revive_vs_boot import fresh, revive  # noqa: E402

from tasks.common import Paths  # noqa: E402
from revive.channel import agent as agent_module  # noqa: E402
from revive.config import load  # noqa: E402
from revive.qemu import saved  # noqa: E402

UPTIME = "cut -d' ' -f1 /proc/uptime"


def workload(compiles: int) -> str:
    return (f"cd /tmp && printf 'int main(void){{return 0;}}\\n' > t.c && s=$({UPTIME}) && "
            f"i=0; while [ $i -lt {compiles} ]; do gcc -o t t.c; i=$((i+1)); done; "
            f"echo \"took $s $({UPTIME})\"")


def guest_seconds(session, command: str) -> float:
    out = bytearray()
    result = session.run(command, timeout=600, sink=out.extend)
    if result.exit_code != 0:
        sys.exit(f"workload failed ({result.exit_code}): {result.output[-2000:]}")
    line = [l for l in out.decode().splitlines() if l.startswith("took ")][-1]
    start, end = map(float, line.split()[1:])
    return end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compiles", type=int, default=20)
    args = parser.parse_args()
    cfg = load(args.project / "config.toml")
    paths = Paths(cfg)
    meta = saved.read_meta(paths.snapshot)
    work = fresh(paths.work / "bench-channel")
    command = workload(args.compiles)
    real_time = agent_module.time
    sparse = types.SimpleNamespace(monotonic=real_time.monotonic,
                                   sleep=lambda s: real_time.sleep(max(s, 2.0)))
    times: "dict[str, list[float]]" = {"agent": [], "agent, polled every 2 s": [], "ssh": []}
    machine = revive(paths, meta, name="bench-channel", work=work,
                     timeout=cfg.timeouts.revive, channel="agent")
    with machine:
        over_agent = machine.connect("agent")
        over_ssh = machine.ssh()
        guest_seconds(over_ssh, command)        # gcc's pages in the guest's cache
        for _ in range(args.rounds):
            times["agent"].append(guest_seconds(over_agent, command))
            agent_module.time = sparse
            try:
                times["agent, polled every 2 s"].append(guest_seconds(over_agent, command))
            finally:
                agent_module.time = real_time
            times["ssh"].append(guest_seconds(over_ssh, command))
            print({k: [round(v, 2) for v in vs] for k, vs in times.items()}, flush=True)
        over_ssh.close()
    print(f"\n{args.compiles} gcc runs in one revived Debian copy, timed in the guest "
          f"(medians of {args.rounds}, interleaved)\n")
    print("| channel | seconds | every run |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
