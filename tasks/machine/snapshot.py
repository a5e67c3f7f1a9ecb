"""Freeze a running machine into a snapshot folder, and revive copies of it.

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

import json
import os
import re
import shlex
import time
from pathlib import Path

from ..core.errors import UserError
from ..core.files import sha256_file
from ..core.wait import wait_for
from . import qemu

META = "meta.json"
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
                            f"{qemu.version()} lacks; set save = \"zstd\"")
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


def _migration_done(machine: qemu.Machine, what: str, timeout: float):
    def status():
        info = machine.cmd("query-migrate")
        state = info.get("status")
        if state == "failed":
            raise machine.error(f"{what} failed: {info.get('error-desc', 'no reason given')}")
        return info if state == "completed" else None
    return wait_for(status, timeout=timeout, what=what, alive=machine.dead,
                    interval=0.01, log=str(machine.qemu_log))


def save(machine: qemu.Machine, folder: Path, method: str, timeout: float) -> float:
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


def incoming(machine: qemu.Machine, folder: Path, method: str, timeout: float) -> None:
    """Load the state into a machine started with ``-incoming defer -S``, then run it."""
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
    wait_for(paused, timeout=timeout, what="reviving the snapshot", alive=machine.dead,
             interval=0.005, log=str(machine.qemu_log))
    machine.cmd("cont")


def write_meta(folder: Path, meta: dict) -> None:
    meta = dict(meta)
    meta["files"] = {}
    for name in state_files(meta["save_method"]):
        path = folder / name
        st = path.stat()
        meta["files"][name] = {"sha256": sha256_file(path), "size": st.st_size}
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / META).read_text())
    except (OSError, ValueError):
        raise UserError(f"{folder / META}: missing or unreadable; run `doit snapshot`") from None


def check(folder: Path, meta: dict) -> None:
    """Refuse a snapshot this QEMU cannot revive, or whose files changed.

    Hashes are checked against meta.json the first time a file is seen with
    its current size and mtime; the verdict is remembered in ``.verified``
    so multi-GB files are not re-hashed on every revive.
    """
    if meta.get("qemu") != qemu.version():
        raise UserError(f"the snapshot was made with QEMU {meta.get('qemu')} and this "
                        f"is {qemu.version()}; run `doit snapshot` to make a new one")
    verified_path = folder / ".verified"
    try:
        verified = json.loads(verified_path.read_text())
    except (OSError, ValueError):
        verified = {}
    changed = False
    for name, want in meta["files"].items():
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UserError(f"{path}: missing from the snapshot; run `doit snapshot`") from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        if verified.get(name) == [want["sha256"], *stamp]:
            continue
        if st.st_size != want["size"] or sha256_file(path) != want["sha256"]:
            raise UserError(f"{path}: does not match its sha256 in {META} (the snapshot "
                            "was changed after it was made); run `doit snapshot`")
        verified[name] = [want["sha256"], *stamp]
        changed = True
    if changed:
        tmp = verified_path.with_name(f".verified.{os.getpid()}")
        tmp.write_text(json.dumps(verified))
        os.replace(tmp, verified_path)
