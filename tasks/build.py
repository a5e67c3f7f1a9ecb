"""Stage 4, build: per [builds.NAME], revive a throwaway copy of the
snapshot (``revive.machine.job``), run the command under its deadline, and
collect outputs, the combined log and the exit code into
artifacts/builds/NAME/."""

import os
import shutil
from pathlib import Path

from .common import (Paths, action, base_damage, say, settings, shared_folder, stage_inputs,
                     uptodate)
from revive.core import interrupts, treeimage
from revive.core.errors import UserError
from revive.core.files import atomic_path, remove
from revive.machine.job import BuildRequest, run_build, write_result


def request_for(inputs) -> BuildRequest:
    (key, build), = inputs.values.items()
    return BuildRequest(
        name=build.name, command=build.command, env=dict(build.env),
        outputs=tuple(build.outputs), timeout=build.timeout, shares=dict(build.shares),
        revive_timeout=inputs.limits["timeouts.revive"],
        max_output_mb=build.max_output_mb, keep_free_mb=build.keep_free_mb,
        keep_failed=inputs.limits["keep_failed"] or keep_wanted_by_env())


def keep_wanted_by_env() -> bool:
    """REVIVE_KEEP_FAILED=1: keep every failed build's copy in this run."""
    return os.environ.get("REVIVE_KEEP_FAILED", "") not in ("", "0")


@action
def make_build(inputs, paths: Paths) -> None:
    request = request_for(inputs)
    # With [cluster] the build runs on a Dask worker (revive/cluster/).
    if inputs.limits.get("cluster") is not None:
        from revive.cluster.submit import run_remote_build
        _report(request, *run_remote_build(inputs.limits["cluster"], paths, request))
        return
    problem = base_damage(paths)
    if problem:
        raise UserError(f"{problem}; run `doit install` to reinstall")
    work = paths.work / f"build-{request.name}-{os.getpid()}"
    remove(work)
    work.mkdir(parents=True)
    target = paths.builds / request.name
    try:
        with atomic_path(target) as out:
            out.mkdir()
            try:
                result = run_build(paths.artifacts, request, key=paths.key, out=out,
                                   work=work, logs=paths.logs)
            except BaseException as err:
                _keep_partial_log(out / "log", paths.logs / f"build-{request.name}.log", err)
                _blame_base(paths, request.name, err)
                raise
            write_result(out, result)
    finally:
        remove(work)
    remove(paths.logs / f"build-{request.name}.log")
    _report(request, target, result)


def _keep_partial_log(log: Path, kept: Path, err: BaseException) -> None:
    """The build folder is a temporary name removed on failure; what the
    command printed so far moves to artifacts/logs/ first."""
    if log.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.unlink(missing_ok=True)      # the live link to the same log
        shutil.move(log, kept)
        stopped = interrupts.find(err)
        if stopped is not None and stopped.log is None:
            stopped.log = str(kept)


def _blame_base(paths: Paths, name: str, err: BaseException) -> None:
    """qemu-img (a snapshot's first copy) or QEMU (the next, whose overlay
    is a copy of the first's: ``saved.overlay``) could not open the
    overlay's backing chain: when base.qcow2 no longer matches its sha256
    (damaged beneath an unchanged stamp), say so; the check forgot the
    stamp, so the install stage is out of date now."""
    if not (isinstance(err, UserError) and ("qemu-img create failed" in str(err)
                                            or "QEMU did not start" in str(err))):
        return
    problem = base_damage(paths, recheck=True)
    if problem:
        raise UserError(f"build {name}: {problem}; the install is out of date now: run "
                        "`doit build` to reinstall (then snapshot and build)") from None


def _report(request, target, result: dict) -> None:
    log = target / "log"
    t = result["timings"]
    name = request.name
    if result.get("kept"):
        log = f"{log}; its state is kept: doit shell:{name} --kept {Path(result['kept']).name}"
    elif result.get("kept_error"):
        log = f"{log}; its state could not be kept: {result['kept_error']}"
    say(f"build {name}: {outcome(result)} (revive {t.get('revive')} s, "
        f"command {t.get('command')} s, total {t.get('total')} s) → {target}")
    if result["timed_out"]:
        why = f" ({result['lost_timers']})" if result.get("lost_timers") else ""
        raise UserError(f"build {name}: the command did not finish within "
                        f"[builds.{name}] timeout = {request.timeout:.0f} s{why}; log: {log}")
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


def outcome(result: dict) -> str:
    """'exit 0', or what ended a command that gave no exit code."""
    if result["exit_code"] is not None:
        return f"exit {result['exit_code']}"
    if result.get("timed_out"):
        return "timed out"
    return "the VM died" if result.get("vm_died") else "no exit code (failed)"


def input_files(paths: Paths, build) -> "list[str]":
    """The files a build reads on the host that doit checks one by one: for a
    ``sources:NAME`` share the sources task's manifest (which hashes every
    file, and makes doit fetch the sources first). Plain shared folders are
    checked by ``folder_checks``."""
    from .sources import folder, manifest
    fetched = {folder(paths, name): manifest(paths, name) for name in build.sources}
    return [str(fetched[path]) for path in build.shares.values() if path in fetched]


def folder_checks(paths: Paths, build) -> "list[shared_folder]":
    """One up-to-date check per plain shared folder: a digest in doit's
    database and a record of its files in artifacts/trees/ (a no-op reads
    stamps only, and `doit info` names the files that changed)."""
    from .sources import folder
    fetched = {folder(paths, name) for name in build.sources}
    return [shared_folder(f"{build.name}.{share}", path,
                          paths.artifacts / "trees" / f"{build.name}.{share}.record")
            for share, path in sorted(build.shares.items()) if path not in fetched]


def clean_build(paths: Paths, name: str, folders=()) -> None:
    """`doit clean build:NAME`: its results, its kept states and the ext2
    images of its shared ``folders`` (a build sharing one too makes it
    again), each named."""
    from revive.machine import IMAGES, keep
    images = [image for folder in folders
              for image in treeimage.images_of(paths.artifacts / IMAGES, folder)]
    for path in [paths.builds / name, *keep.kept_states(paths.artifacts, name), *images]:
        if path.exists():
            remove(path)
            print(f"removed {path}")


def task_build():
    """Run each [builds.NAME] in a throwaway copy revived from the snapshot."""
    cfg = settings()
    paths = Paths(cfg)
    for build in cfg.builds.values():
        inputs = stage_inputs(cfg, f"builds.{build.name}")
        yield {"name": build.name,
               "actions": [(make_build, [inputs, paths])],
               "file_dep": [paths.snapshot_meta, *input_files(paths, build)],
               "targets": [paths.builds / build.name / "result.json"],
               "uptodate": [uptodate(inputs), *folder_checks(paths, build)],
               "clean": [(clean_build, [paths, build.name, sorted(build.shares.values())])],
               "doc": f"build {build.name}: {build.command}"}
