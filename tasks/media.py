"""Stage 1, media: the project's SSH key pair, the guest's payload (built on
the host from pinned packages), the install ISO and the answer floppy."""

import json

from doit.tools import run_once

from . import guests
from .common import Paths, guest_kind, action, config_slice, say, settings
from .core.files import atomic_path, remove, sha256_file
from .core.space import writing
from .formats.fat12 import write_floppy
from .formats.iso import write_iso
from .remote.ssh import generate_keypair


def answers(cfg) -> dict:
    """The answer file's settings, as plain data (also the floppy's slice)."""
    return {
        "hostname": cfg.answers.hostname,
        "user": cfg.answers.user,
        "disk": {"device": "/dev/vda", "filesystem": "ext2",
                 "size_mb": cfg.answers.disk_size_mb},
        # No share settings here: guests are installed able to mount every
        # transport, and the shares are prepared at the snapshot stage, so
        # changing [shares] never reinstalls.
    }


@action
def make_keys(paths: Paths) -> None:
    paths.key.parent.mkdir(parents=True, exist_ok=True)
    remove(paths.public_key)
    generate_keypair(paths.key)


@action
def make_payload(cfg, paths: Paths) -> None:
    kind = guests.kind_for(cfg)
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.logs / "payload.log"
    with writing(paths.payload), atomic_path(paths.payload) as tmp:
        tmp.mkdir()
        kind.build_payload(paths, tmp, log)
        manifest_path = tmp / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        # The ISO task depends on this file alone: it must change whenever
        # any file of the payload does.
        manifest["payload_sha256"] = {str(p.relative_to(tmp)): sha256_file(p)
                                      for p in sorted(tmp.rglob("*"))
                                      if p.is_file() and p != manifest_path}
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    say(f"payload ready in {paths.payload}")


@action
def make_iso(cfg, paths: Paths) -> None:
    kind = guests.kind_for(cfg)
    root = paths.payload / "iso"
    tree = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
    with writing(paths.iso):
        write_iso(paths.iso, tree, volume_id=kind.iso_volume, boot=kind.iso_boot)
    say(f"install ISO: {paths.iso} ({paths.iso.stat().st_size >> 20} MiB, {len(tree)} files)")


@action
def make_floppy(cfg, paths: Paths) -> None:
    kind = guests.kind_for(cfg)
    data = answers(cfg)
    data["ssh_public_key"] = paths.public_key.read_text().strip()
    with writing(paths.floppy):
        write_floppy(paths.floppy, kind.floppy_files(data))
    say(f"answer floppy: {paths.floppy}")


def task_keys():
    """The project's SSH key pair (private key 0600, never committed)."""
    paths = Paths(settings())
    return {"actions": [(make_keys, [paths])],
            "targets": [paths.key, paths.public_key],
            "uptodate": [run_once], "clean": True}


def task_payload():
    """The guest's setup payload, assembled on the host from pinned packages."""
    cfg = settings()
    paths = Paths(cfg)
    kind = guest_kind(cfg)
    key = [paths.public_key] if kind.payload_needs_key() else []
    return {"actions": [(make_payload, [cfg, paths])],
            "file_dep": [str(p) for p in kind.source_files()] + key,
            "targets": [paths.payload_manifest],
            "uptodate": [config_slice("guest", kind.payload_slice())]}


def task_iso():
    """The install ISO (pycdlib): installer, target system, boot loader."""
    cfg = settings()
    paths = Paths(cfg)
    return {"actions": [(make_iso, [cfg, paths])],
            "file_dep": [paths.payload_manifest],
            "targets": [paths.iso]}


def task_floppy():
    """The answer file on a 1.44 MB FAT12 floppy image."""
    cfg = settings()
    paths = Paths(cfg)
    return {"actions": [(make_floppy, [cfg, paths])],
            "file_dep": [paths.public_key],
            "targets": [paths.floppy],
            "uptodate": [config_slice("answers", {"kind": cfg.guest_kind, **answers(cfg),
                                                  **guest_kind(cfg).floppy_slice()})]}

