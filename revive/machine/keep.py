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
from ..qemu import saved
from ..qemu.process import Qemu

KEEP = 3
METHOD = "zstd"


def kept_root(artifacts: Path) -> Path:
    return Path(artifacts) / "kept"


def kept_states(artifacts: Path, build: "str | None" = None) -> "list[Path]":
    """Kept states, oldest first; only ``build``'s when given."""
    root = kept_root(artifacts)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / saved.META).is_file()
             and not p.name.startswith(".")]
    if build is not None:
        found = [p for p in found if _build_of(p) == build]
    return sorted(found, key=lambda p: p.name)


def _build_of(folder: Path) -> "str | None":
    try:
        return json.loads((folder / saved.META).read_text())["kept"]["build"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_failed(qemu: Qemu, *, overlay: Path, artifacts: Path, meta: dict,
                build: str, exit_code: "int | None", timeout: float) -> Path:
    """Stop ``qemu`` (the build's copy, its shares already unmounted), save
    its state, kill it and move its disk ``overlay`` into a new kept folder;
    return that folder."""
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
        qemu.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "x-ignore-shared", "state": False}])
        saved.save(qemu, tmp, METHOD, timeout)
        qemu.kill()
        shutil.move(str(overlay), tmp / saved.DISK)
        (tmp / saved.DISK).chmod(0o444)
        kept = {k: v for k, v in meta.items() if k not in ("files", "timings")}
        kept.update(save_method=METHOD, kept={
            "build": build, "exit_code": exit_code, "saved": stamp,
            "snapshot_disk_sha256": meta["files"][saved.DISK]["sha256"]})
        saved.write_meta(tmp, kept)
        if any("@ram@" in arg for arg in meta["argv"]):
            # The device model maps a RAM file (privately); the stream
            # carries every page, so the snapshot's own file serves.
            os.symlink((Path(artifacts) / "snapshot" / saved.RAM).resolve(), tmp / saved.RAM)
        os.rename(tmp, folder)
    finally:
        remove(tmp)
    prune(artifacts, build)
    return folder


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
    if not (path / saved.META).is_file():
        path = kept_root(artifacts) / given
    if not (path / saved.META).is_file():
        names = ", ".join(p.name for p in kept_states(artifacts)) or "none"
        raise UserError(f"--kept {given}: no kept state there (kept states: {names})")
    meta = saved.read_meta(path)
    if "kept" not in meta:
        raise UserError(f"--kept {given}: {path} is not a kept state")
    if meta["kept"]["snapshot_disk_sha256"] != snapshot_meta["files"][saved.DISK]["sha256"]:
        raise UserError(f"--kept {given}: the snapshot was made again since this state "
                        f"was kept, and its disk was built on the old one; remove {path}")
    return path
