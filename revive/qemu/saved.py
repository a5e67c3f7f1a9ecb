"""A saved machine state: freeze a running QEMU into a folder (a snapshot, or
a kept failed copy) and load it into another.

A snapshot is: ``disk.qcow2`` (an overlay on the base image), the memory and
device state, and ``meta.json`` with the QEMU version, machine, CPU,
accelerator, RAM, the exact device argv (a template; see ``fill``), the save
method and the sha256 of every file. Revive rebuilds the same device model
from that template and refuses, in one line, a snapshot that does not match.

Save methods (docs/architecture.md has the measurements):
- ``file``: guest RAM lives in ``ram`` (memory-backend-file, share=on while
  the snapshot is taken); the migration stream skips it (x-ignore-shared) so
  only device state is written. Revive maps ``ram`` privately (share=off):
  copy-on-write, the file is never changed, clones share its pages.
- ``zstd``: the whole state goes through ``zstd -1`` into ``state.zst``.
"""

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import time
from pathlib import Path

from ..core.errors import UserError
from ..core.files import atomic_path, matches_sha256, remember_sha256, sha256_file
from ..core.proc import run as run_process
from ..core.space import describe_filesystem
from ..core.wait import wait_for
from . import gdbstub
from .devices import ARCHES, Arch
from .process import Qemu, version

META = "meta.json"
VERIFIED = ".verified"
DISK = "disk.qcow2"
RAM = "ram"
STATE = {"file": "state", "zstd": "state.zst"}
BANDWIDTH = 1 << 40          # bytes/s: effectively unlimited


def state_files(method: str) -> "list[str]":
    return [DISK, STATE[method]] + ([RAM] if method == "file" else [])


def choose_method(requested: str, capabilities: "set[str]") -> str:
    if requested != "auto":
        if requested == "file" and "x-ignore-shared" not in capabilities:
            raise UserError("config.toml: [vm] save = \"file\" needs QEMU's "
                            "x-ignore-shared migration capability, which this QEMU "
                            f"{version()} lacks; set save = \"zstd\"")
        return requested
    return "file" if "x-ignore-shared" in capabilities else "zstd"


_TOKEN = re.compile(r"@([a-z][a-z0-9.-]*)@")


def fill(template: "list[str]", values: "dict[str, str]") -> "list[str]":
    """Replace ``@name@`` tokens in one pass (values are never rescanned)."""
    def one(m):
        if m.group(1) not in values:
            raise UserError(f"the snapshot's argv needs a value for {m.group(0)}; "
                            "rerun `doit snapshot`")
        return str(values[m.group(1)])
    return [_TOKEN.sub(one, arg) for arg in template]


# Room for the device state and the disk overlay's growth beside the RAM.
STATE_ROOM_MB = 64
# Empty overlays kept in a project (saved.overlay): one per saved disk in use
# (the snapshot's, a kept failed copy's, one being replaced).
KEEP_TEMPLATES = 4


def check_room(folder: Path, memory_mb: int) -> None:
    """Before QEMU starts: the snapshot folder's filesystem must hold the
    guest's whole RAM (the RAM file, or the state that carries it) and the
    device state. A RAM file that cannot grow kills QEMU with SIGBUS, which
    says nothing about the disk."""
    need = (memory_mb + STATE_ROOM_MB) << 20
    vfs = os.statvfs(folder)
    free = vfs.f_bavail * vfs.f_frsize
    if free < need:
        raise UserError(f"no space left for the snapshot: it needs {need >> 20} MB "
                        f"([vm] memory = {memory_mb} MB of RAM and {STATE_ROOM_MB} MB of "
                        f"state) on {describe_filesystem(folder)}; free space there "
                        "(or lower [vm] memory) and rerun")


def _migration_done(machine: Qemu, what: str, timeout: float):
    def status():
        info = machine.cmd("query-migrate")
        state = info.get("status")
        if state == "failed":
            raise machine.error(f"{what} failed: {info.get('error-desc', 'no reason given')}")
        return info if state == "completed" else None
    return wait_for(status, timeout=timeout, what=what, alive=machine.dead,
                    interval=0.01, log=str(machine.qemu_log))


def save(machine: Qemu, folder: Path, method: str, timeout: float) -> float:
    """Stop the machine and write its state into ``folder``; return seconds."""
    start = time.monotonic()
    if method == "file":
        machine.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "x-ignore-shared", "state": True}])
    machine.cmd("migrate-set-parameters", **{"max-bandwidth": BANDWIDTH})
    machine.cmd("stop")
    target = shlex.quote(str(folder / STATE[method]))
    uri = f"exec:cat > {target}" if method == "file" else f"exec:zstd -1 -q -o {target}"
    machine.cmd("migrate", uri=uri)
    _migration_done(machine, "saving the machine state", timeout)
    return time.monotonic() - start


def incoming(machine: Qemu, folder: Path, method: str, timeout: float,
             media: "dict[str, Path] | None" = None, timer_csr: str = "") -> None:
    """Load the state into a machine started with ``-incoming defer -S``,
    put ``media`` (drive's qdev id → image) into its empty drives, re-arm
    the timer behind ``timer_csr`` (the arch row's, see ``Arch``), then run it."""
    if method == "file":
        machine.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "x-ignore-shared", "state": True}])
    source = shlex.quote(str(folder / STATE[method]))
    uri = f"exec:cat {source}" if method == "file" else f"exec:zstd -dcq {source}"
    machine.cmd("migrate-incoming", uri=uri)

    def paused():
        state = machine.status()
        if state in ("paused", "running"):
            return state
        info = machine.cmd("query-migrate")
        if info.get("status") == "failed":
            raise machine.error("reviving the snapshot failed: "
                                f"{info.get('error-desc', 'see the QEMU log')}")
        return None
    try:
        wait_for(paused, timeout=timeout, what="reviving the snapshot", alive=machine.dead,
                 interval=0.005, log=str(machine.qemu_log))
    except UserError:
        # A state file QEMU cannot load makes it exit; QMP then only says
        # "Disconnected" and the reason is in QEMU's own messages.
        cause = load_failure(machine)
        if not cause:
            raise
        # Damage beneath an unchanged stamp: forget the remembered hashes, so
        # that this check and the snapshot stage's up-to-date check re-hash.
        (folder / VERIFIED).unlink(missing_ok=True)
        problem = damage(folder, read_meta(folder))
        advice = (f"{problem}; run `doit snapshot` to make a new one" if problem else
                  "run `doit forget snapshot` then `doit snapshot` to make a new one")
        raise UserError(f"reviving the snapshot failed: {cause}; {advice}",
                        log=str(machine.qemu_log)) from None
    insert_media(machine, media or {})
    if timer_csr:
        gdbstub.rearm(machine, timer_csr)
    machine.cmd("cont")


def insert_media(machine: Qemu, media: "dict[str, Path]") -> None:
    """Put a read-only raw image into each empty CD drive named (by its
    qdev id), before the guest runs: the guest sees a medium that was
    changed while it was stopped, as with a disc put into a closed tray."""
    for drive, image in media.items():
        machine.cmd("blockdev-change-medium", id=drive, filename=str(image), format="raw",
                    **{"read-only-mode": "read-only"})


def load_failure(machine: Qemu, wait: float = 5) -> "str | None":
    """QEMU's own words on why it could not load the state, once it exited."""
    try:
        machine.proc.wait(timeout=wait)
    except Exception:
        return None
    text = machine.qemu_log.read_text(errors="replace") if machine.qemu_log.exists() else ""
    own = [l.strip() for l in text.split("\n---", 1)[0].splitlines()[1:] if l.strip()]
    for line in reversed(own):
        if "migration" in line or "load" in line:
            return _QEMU_PREFIX.sub("", line)
    return _QEMU_PREFIX.sub("", own[-1]) if own else None


_QEMU_PREFIX = re.compile(r"^\S*qemu-system-[\w-]+: ")


def write_meta(folder: Path, meta: dict) -> None:
    meta = dict(meta)
    meta["files"] = {}
    for name in state_files(meta["save_method"]):
        path = folder / name
        st = path.stat()
        digest = sha256_file(path)
        meta["files"][name] = {"sha256": digest, "size": st.st_size}
        remember_sha256(path, digest, folder / VERIFIED)
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / META).read_text())
    except (OSError, ValueError):
        raise UserError(f"{folder / META}: missing or unreadable; run `doit snapshot`") from None


def arch_of(meta: dict) -> Arch:
    """The snapshot's architecture (snapshots from before there was a choice
    are amd64)."""
    name = meta.get("arch", "amd64")
    if name not in ARCHES:
        raise UserError(f"the snapshot is of architecture {name!r}, which this revive "
                        f"does not know ({', '.join(ARCHES)}); run `doit snapshot`")
    return ARCHES[name]


def check(folder: Path, meta: dict) -> None:
    """Refuse a snapshot this QEMU cannot revive, or whose files changed."""
    binary = arch_of(meta).qemu
    if meta.get("qemu") != version(binary):
        raise UserError(f"the snapshot was made with QEMU {meta.get('qemu')} and this "
                        f"{binary} is {version(binary)}; run `doit snapshot` to make "
                        "a new one")
    problem = damage(folder, meta)
    if problem:
        raise UserError(f"{problem}; run `doit snapshot` to make a new one")


def damage(folder: Path, meta: dict) -> "str | None":
    """What is wrong with the snapshot's files, or None.

    A file is hashed only when its stamp (size, mtime, inode, ctime) differs
    from the one remembered in ``.verified``, so multi-GB files are not
    re-hashed on every run; the snapshot stage's up-to-date check and every
    revive call this.
    """
    record = folder / VERIFIED
    for name, want in meta.get("files", {}).items():
        path = folder / name
        if not path.exists():
            return f"{path}: missing from the snapshot"
        if path.stat().st_size != want["size"] or \
                not matches_sha256(path, want["sha256"], record):
            return (f"{path}: does not match its sha256 in {META} (the snapshot "
                    "was changed after it was made)")
    return None


def overlay(backing: Path, target: Path, *, templates: "Path | None", log: Path) -> None:
    """A copy's own qcow2 overlay ``target`` on the saved disk ``backing``.
    An empty overlay is the same bytes for every copy of one saved disk
    (its header names the backing file and its size; nothing else
    varies), so the first copy's, made by ``qemu-img create``, is kept in
    ``templates`` under a name that changes when the saved disk does, and
    the next copies take a copy of it: 0.5 ms instead of qemu-img's 15 ms
    (docs/benchmarks.md). A relative backing path would name another file
    from another folder: no template then."""
    backing = Path(backing)
    template = None
    try:
        st = backing.stat() if templates is not None and backing.is_absolute() else None
    except OSError:
        st = None       # qemu-img below says what is wrong with it, in one line
    if st is not None:
        key = hashlib.sha256(f"{backing}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0"
                             f"{st.st_mtime_ns}".encode()).hexdigest()[:16]
        template = Path(templates) / f"overlay-{key}.qcow2"
        try:
            shutil.copyfile(template, target)
        except FileNotFoundError:
            pass
        else:
            with contextlib.suppress(OSError):
                os.utime(template)      # used: the last to go (below)
            with open(log, "a") as fh:
                fh.write(f"+ cp {shlex.quote(str(template))} {shlex.quote(str(target))}\n")
            return
    run_process(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing,
                 target], log=log, what="qemu-img create")
    if template is None:
        return
    try:
        # A few saved disks are in use at once (the snapshot's, kept failed
        # copies'): the templates used last stay, older ones go.
        olds = sorted(Path(templates).glob("overlay-*.qcow2"),
                      key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in olds[KEEP_TEMPLATES - 1:]:
            old.unlink(missing_ok=True)
        with atomic_path(template) as tmp:
            shutil.copyfile(target, tmp)
    except OSError:
        pass        # a cache: the next copy runs qemu-img again
