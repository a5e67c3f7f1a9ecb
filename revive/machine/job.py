"""One build in a throwaway copy: revive it, run the command, stream the
log, collect the outputs, return the result (result.json's content).

A library call, no doit: the build stage, the benchmarks and cluster
workers call ``run_build``; everything else is ``revive.machine.Machine``.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..core import progress
from ..core.collect import Limits, collect_outputs
from ..core.errors import UserError
from ..core.files import remove
from ..core.space import is_nospace, nospace_message
from ..qemu import saved
from . import Machine, Stopwatch, revived


@dataclass(frozen=True)
class BuildRequest:
    name: str
    command: str
    env: "dict[str, str]"
    outputs: "tuple[str, ...]"
    timeout: float                 # the command's deadline, seconds
    shares: "dict[str, Path]"      # read-only share name → host folder
    revive_timeout: float          # [timeouts] revive
    keep_failed: bool = False      # save the copy when the command fails (keep.py)
    max_output_mb: int = 4096      # [builds.NAME] max_output_size
    keep_free_mb: int = 256        # [builds.NAME] keep_free


def run_build(artifacts: Path, request: BuildRequest, *, key: Path, out: Path,
              work: Path, logs: Path,
              started: Optional[Callable[[Machine], None]] = None) -> dict:
    """Revive a copy, run ``request.command`` in it, write ``out/log`` (as
    the output comes) and ``out/outputs/``; return the result (exit code,
    timings, outputs). A non-zero exit code is a result, not an error.
    ``started`` is handed the machine before it launches (a cluster worker
    cancels it from another thread)."""
    watch = Stopwatch()
    artifacts = Path(artifacts)
    with revived(artifacts / "snapshot", artifacts=artifacts, name=f"build-{request.name}",
                 shares=request.shares, key=key, work=work, logs=logs,
                 timeout=request.revive_timeout, watch=watch, started=started,
                 prepare_with_command=True) as copy:
        command = copy.kind.command_line(request.command, request.env,
                                         copy.meta.get("user", "root"), copy.shares)
        with open(out / "log", "wb") as log, watch.phase("command"):
            # The same file as logs/build-NAME.log while the build runs, so
            # that `tail -f` follows it; REVIVE_VERBOSE=1 echoes it too.
            live = Path(logs) / f"build-{request.name}.log"
            live.unlink(missing_ok=True)
            try:
                os.link(out / "log", live)
            except OSError:
                # Another filesystem (artifacts/builds on its own mount): a
                # link by name, good while the build runs.
                live.symlink_to(out / "log")
            result = copy.run(command, timeout=request.timeout,
                              sink=progress.build_sink(log, request.name))
        if result.phases:
            # The guest timed the preparation and the command in one process;
            # "channel" is what the host waited beyond them (starting the
            # process, learning that it ended).
            ran = watch.phases.pop("command")
            watch.phases.update(result.phases)
            watch.phases["channel"] = round(max(0.0, ran - sum(result.phases.values())), 3)
        vm_died = copy.qemu.proc.poll() is not None
        kept = {}
        if result.exit_code != 0 and request.keep_failed and not vm_died:
            kept = copy.keep(artifacts=artifacts, build=request.name,
                             exit_code=result.exit_code, timeout=request.revive_timeout)
    meta = copy.meta
    failure = result.failure
    # A board whose revived timers QEMU loses: said beside a timeout.
    lost_timers = saved.arch_of(meta).lost_timers(meta.get("qemu", ""))
    if result.timed_out:
        failure = f"the command did not finish within {request.timeout:.0f} s"
        if lost_timers:
            failure += f" ({lost_timers})"
    elif vm_died:
        failure = f"the VM died: {failure}"
    # Collected only once the copy is killed (leaving ``revived``): the
    # guest cannot swap an entry between the check and the copy.
    exchange = copy.folders[next(s.name for s in copy.shares if s.mode == "rw")]
    refused: "list[str]" = []
    with watch.phase("collect"):
        try:
            limits = Limits(request.max_output_mb << 20, request.keep_free_mb << 20,
                            f"[builds.{request.name}]")
            collected, missing, refused = collect_outputs(exchange, request.outputs,
                                                          out / "outputs", limits)
        except (UserError, OSError) as err:
            # The log and result.json are kept even when the outputs cannot be.
            remove(out / "outputs")
            if isinstance(err, OSError) and not is_nospace(err):
                raise
            collected, missing = [], list(request.outputs)
            failure = failure or (str(err) if isinstance(err, UserError)
                                  else nospace_message(err, out))
    return {**kept, "build": request.name, "exit_code": result.exit_code,
            "timed_out": result.timed_out, "lost_timers": lost_timers, "vm_died": vm_died,
            "failure": failure, "outputs": collected,
            "missing_outputs": missing, "refused_outputs": refused,
            "timings": {**watch.phases, "total": watch.total()},
            "snapshot": {"qemu": meta["qemu"], "accelerator": meta["accelerator"],
                         "save_method": meta["save_method"]}}


def write_result(out: Path, result: dict) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
