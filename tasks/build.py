"""Stage 4, build: per [builds.NAME], revive a throwaway copy of the
snapshot (``machine.revive``), run the command under its deadline, and
collect outputs, the combined log and the exit code into
artifacts/builds/NAME/."""

import os

from .common import Paths, action, files_under, say, settings, stage_inputs, uptodate
from .core.errors import UserError
from .core.files import atomic_path, remove
from .machine import revive


def request_for(inputs) -> revive.BuildRequest:
    (key, build), = inputs.values.items()
    return revive.BuildRequest(
        name=build.name, command=build.command, env=dict(build.env),
        outputs=tuple(build.outputs), timeout=build.timeout, shares=dict(build.shares),
        revive_timeout=inputs.limits["timeouts.revive"])


@action
def run_build(inputs, paths: Paths) -> None:
    request = request_for(inputs)
    work = paths.work / f"build-{request.name}-{os.getpid()}"
    remove(work)
    work.mkdir(parents=True)
    target = paths.builds / request.name
    try:
        with atomic_path(target) as out:
            out.mkdir()
            result = revive.run_build(paths.artifacts, request, key=paths.key, out=out,
                                      work=work, logs=paths.logs)
            revive.write_result(out, result)
    finally:
        remove(work)
    _report(request, target, result)


def _report(request, target, result: dict) -> None:
    log = target / "log"
    t = result["timings"]
    name = request.name
    say(f"build {name}: exit {result['exit_code']} (revive {t.get('revive')} s, "
        f"command {t.get('command')} s, total {t.get('total')} s) → {target}")
    if result["timed_out"]:
        raise UserError(f"build {name}: the command did not finish within "
                        f"[builds.{name}] timeout = {request.timeout:.0f} s; log: {log}")
    if result["failure"] and result["exit_code"] is None:
        raise UserError(f"build {name}: {result['failure']}; log: {log}")
    if result["exit_code"] != 0:
        raise UserError(f"build {name}: the command exited with code "
                        f"{result['exit_code']}; log: {log}")
    if result["failure"]:
        raise UserError(f"build {name}: {result['failure']}; log: {log}")
    if result["refused_outputs"]:
        raise UserError(f"build {name}: outputs refused (only regular files and "
                        f"folders are collected): {'; '.join(result['refused_outputs'])}; "
                        f"log: {log}")
    if result["missing_outputs"]:
        raise UserError(f"build {name}: declared outputs not produced: "
                        f"{', '.join(result['missing_outputs'])} ([builds.{name}] "
                        f"outputs); log: {log}")


def task_build():
    """Run each [builds.NAME] in a throwaway copy revived from the snapshot."""
    cfg = settings()
    paths = Paths(cfg)
    for build in cfg.builds.values():
        inputs = stage_inputs(cfg, f"builds.{build.name}")
        sources = [f for p in build.shares.values() for f in files_under(p)]
        yield {"name": build.name,
               "actions": [(run_build, [inputs, paths])],
               "file_dep": [paths.snapshot_meta, *sources],
               "targets": [paths.builds / build.name / "result.json"],
               "uptodate": [uptodate(inputs)],
               "doc": f"build {build.name}: {build.command}"}
