"""Post-mortem states: a failed build's copy saved as it was when its
command ended (disk overlay, memory and device state), in a folder laid
out like a snapshot so that it can be revived the same way:

    artifacts/kept/NAME-YYYYmmdd-HHMMSS/
        disk.qcow2    the build's overlay (backed by the snapshot's disk)
        state.zst     the whole machine state, RAM included
        meta.json     the snapshot's meta with save_method "zstd", the
                      sha256 of both files, and "kept": which build, when,
                      its exit code and the snapshot it was revived from

The whole RAM goes into the stream (zstd): the copy's RAM is a private
mapping of the snapshot's RAM file, which x-ignore-shared does not skip,
and the kept state must not depend on that file staying as it is.
Only the newest ``KEEP`` states of a build are kept.
"""

import json
import os
import shutil
import time
from pathlib import Path

from ..core.errors import UserError
from ..core.files import remove
from ..remote import agent
from . import qemu
from . import snapshot as snap

KEEP = 3
METHOD = "zstd"


def kept_root(artifacts: Path) -> Path:
    return Path(artifacts) / "kept"


def kept_states(artifacts: Path, build: "str | None" = None) -> "list[Path]":
    """Kept states, oldest first; only ``build``'s when given."""
    root = kept_root(artifacts)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / snap.META).is_file()
             and not p.name.startswith(".")]
    if build is not None:
        found = [p for p in found if _build_of(p) == build]
    return sorted(found, key=lambda p: p.name)


def _build_of(folder: Path) -> "str | None":
    try:
        return json.loads((folder / snap.META).read_text())["kept"]["build"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_failed(machine: qemu.Machine, *, overlay: Path, artifacts: Path, meta: dict,
                build: str, exit_code: "int | None", timeout: float) -> Path:
    """Stop ``machine`` (the build's copy, its shares already unmounted),
    save its state and move its disk ``overlay`` into a new kept folder;
    return that folder. The machine is stopped, not killed."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = kept_root(artifacts) / f"{build}-{stamp}"
    n = 1
    while folder.exists():
        n += 1
        folder = kept_root(artifacts) / f"{build}-{stamp}-{n}"
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    remove(tmp)
    tmp.mkdir(parents=True)
    try:
        # The copy was revived with x-ignore-shared on; the kept stream must
        # carry all RAM in the plain format a zstd revive reads.
        machine.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "x-ignore-shared", "state": False}])
        snap.save(machine, tmp, METHOD, timeout)
        machine.kill()
        shutil.move(str(overlay), tmp / snap.DISK)
        (tmp / snap.DISK).chmod(0o444)
        kept = {k: v for k, v in meta.items() if k not in ("files", "timings")}
        kept.update(save_method=METHOD, kept={
            "build": build, "exit_code": exit_code, "saved": stamp,
            "snapshot_disk_sha256": meta["files"][snap.DISK]["sha256"]})
        snap.write_meta(tmp, kept)
        if any("@ram@" in arg for arg in meta["argv"]):
            # The device model maps a RAM file (privately); the stream
            # carries every page, so the snapshot's own file serves.
            os.symlink((Path(artifacts) / "snapshot" / snap.RAM).resolve(), tmp / snap.RAM)
        os.rename(tmp, folder)
    finally:
        remove(tmp)
    prune(artifacts, build)
    return folder


def keep_failed_copy(copy, *, artifacts: Path, work: Path, build: str,
                     exit_code: "int | None", timeout: float) -> dict:
    """Save a failed build's revived ``copy`` (revive.Copy) as the command
    left it: ``{"kept": folder}``, or ``{"kept_error": why}`` when it cannot
    be saved; the build's own failure is what gets reported either way."""
    # The kind leaves no share mounted (9p blocks the save; SMB would be
    # stale when the state is reopened), the agent's output share neither.
    unmount = copy.kind.before_keep(copy.shares)
    if agent.uses_agent(copy.meta):
        unmount = f"{{ umount {agent.STREAM_GUEST} 2>/dev/null || true; }} && {unmount}"
    try:
        copy.session.check(unmount, timeout=60,
                           what="unmounting the shares to keep the failed copy")
        folder = save_failed(copy.machine, overlay=work / "disk.qcow2", artifacts=artifacts,
                             meta=copy.meta, build=build, exit_code=exit_code,
                             timeout=max(timeout, 60))
    except UserError as err:
        return {"kept_error": str(err)}
    return {"kept": str(folder)}


def prune(artifacts: Path, build: str, keep: int = KEEP) -> "list[Path]":
    """Remove all but the newest ``keep`` states of ``build``; return them."""
    old = kept_states(artifacts, build)[:-keep] if keep else kept_states(artifacts, build)
    for path in old:
        remove(path)
    return old


def resolve(artifacts: Path, given: str, snapshot_meta: dict) -> Path:
    """The kept folder a user named (a path, or a folder name under
    artifacts/kept/), checked against the current snapshot."""
    path = Path(given)
    if not (path / snap.META).is_file():
        path = kept_root(artifacts) / given
    if not (path / snap.META).is_file():
        names = ", ".join(p.name for p in kept_states(artifacts)) or "none"
        raise UserError(f"--kept {given}: no kept state there (kept states: {names})")
    meta = snap.read_meta(path)
    if "kept" not in meta:
        raise UserError(f"--kept {given}: {path} is not a kept state")
    if meta["kept"]["snapshot_disk_sha256"] != snapshot_meta["files"][snap.DISK]["sha256"]:
        raise UserError(f"--kept {given}: the snapshot was made again since this state "
                        f"was kept, and its disk was built on the old one; remove {path}")
    return path
