"""A big read-only share as an ext2 image: made by the real mke2fs, read
back by debugfs (e2fsprogs' own reader, no mount), kept while the folder
is unchanged, replaced when it changes; and the empty CD drive it goes into
takes it through QMP in a real QEMU."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from revive import qemu
from revive.core import treeimage
from revive.qemu import Qemu, saved
from revive.qemu.devices import DeviceModel, tree_drive

DEBUGFS = shutil.which("debugfs") or "/usr/sbin/debugfs"
needs_e2fsprogs = pytest.mark.skipif(not Path(DEBUGFS).exists() or
                                     not Path(treeimage.mke2fs()).exists(),
                                     reason="needs e2fsprogs")


def make_tree(root: Path, files: int) -> Path:
    for i in range(files):
        folder = root / f"d{i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.c").write_text(f"/* file {i} */\n" + "int x;\n" * (i % 7))
    return root


def debugfs(image: Path, request: str) -> str:
    return subprocess.run([DEBUGFS, "-R", request, str(image)], capture_output=True,
                          text=True, check=True).stdout


def files_in(image: Path, folder: str = "/") -> "dict[str, str]":
    """Every entry's name and type letter below ``folder``, read with debugfs."""
    found = {}
    for line in debugfs(image, f"ls -p {folder}").splitlines():
        fields = line[1:].split("/")           # /inode/mode/uid/gid/name/size/
        if len(fields) < 5 or fields[4] in (".", ".."):
            continue
        path = f"{folder.rstrip('/')}/{fields[4]}"
        found[path] = {0o04: "d", 0o10: "f", 0o12: "l"}[int(fields[1], 8) >> 12]
        if found[path] == "d":
            found.update(files_in(image, path))
    return found


@needs_e2fsprogs
def test_below_the_threshold_the_share_stays_on_9p(tmp_path):
    tree = make_tree(tmp_path / "small", treeimage.THRESHOLD - 10)
    assert treeimage.image_for(tree, tmp_path / "images", tmp_path / "log") is None
    assert not (tmp_path / "images").exists()


@needs_e2fsprogs
def test_the_image_holds_the_tree_as_the_host_has_it(tmp_path):
    tree = make_tree(tmp_path / "tree", 300)
    big = os.urandom(3 << 20)
    (tree / "deep" / "er" / "still").mkdir(parents=True)
    (tree / "deep" / "er" / "still" / "big.bin").write_bytes(big)
    (tree / "empty").write_bytes(b"")
    (tree / "nothing").mkdir()
    (tree / "short").symlink_to("d00/f0000.c")
    (tree / "long").symlink_to("x" * 100)
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    image = treeimage.image_for(tree, tmp_path / "images", tmp_path / "log")
    assert image is not None and image.parent == tmp_path / "images"
    subprocess.run(["/usr/sbin/e2fsck" if Path("/usr/sbin/e2fsck").exists() else "e2fsck",
                    "-fn", str(image)], check=True, capture_output=True)
    listed = files_in(image)
    host = {f"/{p.relative_to(tree)}": "l" if p.is_symlink() else "d" if p.is_dir() else "f"
            for p in tree.rglob("*")}
    assert listed == host
    assert debugfs(image, "cat /d05/f0299.c") == (tree / "d05" / "f0299.c").read_text()
    out = tmp_path / "big.out"
    subprocess.run([DEBUGFS, "-R", f"dump /deep/er/still/big.bin {out}", str(image)],
                   check=True, capture_output=True)
    assert out.read_bytes() == big
    assert "Fast link dest: \"d00/f0000.c\"" in debugfs(image, "stat /short")
    assert "0755" in debugfs(image, "stat /run.sh").split("Mode:", 1)[1][:12]


@needs_e2fsprogs
def test_an_unchanged_tree_reuses_its_image_a_changed_one_replaces_it(tmp_path):
    tree = make_tree(tmp_path / "tree", 250)
    other = make_tree(tmp_path / "other", 250)
    images, log = tmp_path / "images", tmp_path / "log"
    first = treeimage.image_for(tree, images, log)
    theirs = treeimage.image_for(other, images, log)
    made = log.read_text().count("+ ")
    assert treeimage.image_for(tree, images, log) == first
    assert log.read_text().count("+ ") == made, "mke2fs ran again for an unchanged tree"
    (tree / "d01" / "f0060.c").write_text("changed\n")
    second = treeimage.image_for(tree, images, log)
    assert second != first and not first.exists()
    assert debugfs(second, "cat /d01/f0060.c") == "changed\n"
    # Another folder's image is not this folder's to remove.
    assert theirs.exists()
    assert treeimage.images_of(images, tree) == [second]
    assert treeimage.images_of(images, other) == [theirs]


@needs_e2fsprogs
def test_a_copy_keeps_its_image_when_the_cache_moves_on(tmp_path):
    tree = make_tree(tmp_path / "tree", 250)
    images, work = tmp_path / "images", tmp_path / "work"
    work.mkdir()
    first = treeimage.image_for(tree, images, tmp_path / "log")
    linked = treeimage.image_at(tree, images, tmp_path / "log", work / "tree-src.ext2")
    assert linked.stat().st_ino == first.stat().st_ino, "a link, not a copy"
    (tree / "d00" / "f0000.c").write_text("changed\n")
    treeimage.image_for(tree, images, tmp_path / "log")
    assert not first.exists() and linked.exists()
    assert debugfs(linked, "cat /d00/f0000.c") == "/* file 0 */\n"


def test_entries_and_sizes_come_from_one_listing(tmp_path):
    tree = make_tree(tmp_path / "tree", 20)
    (tree / "big").write_bytes(b"x" * (10 << 20))
    listed = treeimage.entries(treeimage.tree.stamps(tree))
    assert len(listed) == 20 + 1 + 1          # files, a folder, the big one
    assert ("big", "f", 10 << 20) in listed
    blocks, inodes = treeimage.size_for(listed)
    assert blocks * treeimage.BLOCK > (10 << 20) + 20 * treeimage.BLOCK
    assert inodes > len(listed)


@pytest.mark.skipif(not shutil.which(qemu.BINARY), reason="needs QEMU")
@needs_e2fsprogs
def test_an_empty_tree_drive_takes_the_image_through_qmp(tmp_path):
    tree = make_tree(tmp_path / "tree", 250)
    image = treeimage.image_for(tree, tmp_path / "images", tmp_path / "log")
    argv = DeviceModel(tree_drives=("src", "more")).render()
    with Qemu(argv + ["-S"], name="trees", logdir=tmp_path) as vm:
        vm.launch()
        before = {b["qdev"]: b for b in vm.cmd("query-block")}
        assert "inserted" not in before[tree_drive(0)]
        saved.insert_media(vm, {tree_drive(1): image})
        after = {b["qdev"]: b for b in vm.cmd("query-block")}
        assert "inserted" not in after[tree_drive(0)]
        inserted = after[tree_drive(1)]["inserted"]
        assert inserted["file"] == str(image) and inserted["ro"] is True
        assert inserted["drv"] == "raw"


def test_each_read_only_9p_share_has_a_drive_and_mounts_from_it_when_told():
    from revive.config import Share
    from revive.guests.linux import mount_command, tree_slots
    shares = [Share("src", "/mnt/src", "ro", "9p", None),
              Share("xchg", "/mnt/xchg", "rw", "9p", None),
              Share("docs", "/mnt/docs", "ro", "smb", None),
              Share("more", "/mnt/more", "ro", "9p", None)]
    assert tree_slots(shares) == {"src": 0, "more": 1}
    plain = mount_command(shares)
    assert "mount -t ext2" not in plain and plain.count("-t 9p") == 3
    from_image = mount_command(shares, {"more": 1})
    assert from_image.count("-t 9p") == 2 and "more /mnt/more" not in from_image
    assert "*:0:1:0/block" in from_image
    assert "mount -t ext2 -o ro,nodev,nosuid /dev/" in from_image
    argv = DeviceModel(tree_drives=tuple(tree_slots(shares))).render()
    assert argv.count("-drive") == 2 and "scsi-id=1" in " ".join(argv)


@needs_e2fsprogs
def test_an_image_pruned_before_it_is_linked_is_made_again(tmp_path, monkeypatch):
    """Another copy's newer image of the folder removed this one between
    finding it and linking it: it is made again, not a failed build."""
    tree = make_tree(tmp_path / "tree", 250)
    images, work = tmp_path / "images", tmp_path / "work"
    work.mkdir()
    real = treeimage.image_for
    calls = []

    def pruned_once(*args):
        image = real(*args)
        if not calls:
            image.unlink()          # what the other copy's prune did
        calls.append(image)
        return image
    monkeypatch.setattr(treeimage, "image_for", pruned_once)
    linked = treeimage.image_at(tree, images, tmp_path / "log", work / "tree-src.ext2")
    assert len(calls) == 2 and linked.exists()
    assert debugfs(linked, "cat /d00/f0000.c") == "/* file 0 */\n"
