"""Stage 1, media: the project's SSH key pair, the guest's payload (built on
the host from pinned packages), the install ISO and the answer floppy."""

import json

from doit.tools import run_once

from .common import Paths, action, code_files, say, settings, stage_inputs, uptodate
from revive.core.files import atomic_path, remove, sha256_file
from revive.core.space import writing
from revive.formats.fat12 import write_floppy
from revive.formats.iso import write_iso
from revive.channel.ssh import generate_keypair


@action
def make_keys(paths: Paths) -> None:
    paths.key.parent.mkdir(parents=True, exist_ok=True)
    remove(paths.public_key)
    generate_keypair(paths.key)


@action
def make_payload(inputs, paths: Paths) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.logs / "payload.log"
    with writing(paths.payload), atomic_path(paths.payload) as tmp:
        tmp.mkdir()
        inputs.guest_kind().build_payload(inputs, paths, tmp, log)
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
def make_iso(inputs, paths: Paths) -> None:
    kind = inputs.guest_kind()
    root = paths.payload / "iso"
    tree = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
    with writing(paths.iso):
        write_iso(paths.iso, tree, volume_id=kind.iso_volume, boot=kind.iso_boot)
    say(f"install ISO: {paths.iso} ({paths.iso.stat().st_size >> 20} MiB, {len(tree)} files)")


@action
def make_floppy(inputs, paths: Paths) -> None:
    files = inputs.guest_kind().floppy_files(inputs, paths.public_key.read_text().strip())
    with writing(paths.floppy):
        write_floppy(paths.floppy, files)
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
    inputs = stage_inputs(cfg, "payload")
    kind = inputs.guest_kind()
    key = [paths.public_key] if kind.payload_needs_key() else []
    return {"actions": [(make_payload, [inputs, paths])],
            "file_dep": key,
            "targets": [paths.payload_manifest],
            "uptodate": [uptodate(inputs), code_files("payload", kind.source_files())]}


def task_iso():
    """The install ISO (pycdlib): installer, target system, boot loader."""
    cfg = settings()
    paths = Paths(cfg)
    inputs = stage_inputs(cfg, "iso")
    return {"actions": [(make_iso, [inputs, paths])],
            "file_dep": [paths.payload_manifest],
            "targets": [paths.iso],
            "uptodate": [uptodate(inputs)]}


def task_floppy():
    """The answer file on a 1.44 MB FAT12 floppy image."""
    cfg = settings()
    paths = Paths(cfg)
    inputs = stage_inputs(cfg, "floppy")
    return {"actions": [(make_floppy, [inputs, paths])],
            "file_dep": [paths.public_key],
            "targets": [paths.floppy],
            "uptodate": [uptodate(inputs)]}
