"""The newc cpio writer, read back by GNU cpio."""

import gzip
import shutil
import subprocess

import pytest

from revive.formats.cpio import Archive


def cpio_tool() -> str:
    found = shutil.which("cpio")
    if found is None:
        pytest.skip("cpio not found: apt-get install cpio")
    return found


def run_cpio(args, data: bytes, cwd=None) -> str:
    result = subprocess.run([cpio_tool(), *args], input=data, cwd=cwd,
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def sample(order=1) -> Archive:
    archive = Archive()
    steps = [
        lambda: archive.file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
        lambda: archive.symlink("bin/sh", "tool"),
        lambda: archive.char_device("dev/console", 5, 1),
        lambda: archive.dir("tmp", 0o1777),
        # Sizes 0..5 exercise the 4-byte padding of names and data.
        *[lambda n=n: archive.file(f"data/f{n}", b"x" * n) for n in range(6)],
        lambda: archive.file("deep/er/still/file.txt", b"nested\n"),
    ]
    for step in steps[::order]:
        step()
    return archive


def listing(data: bytes) -> "dict[str, str]":
    """{path: the `ls -l`-style line} from `cpio -tv`."""
    lines = run_cpio(["-t", "-v", "--quiet"], data).splitlines()
    return {line.split()[-1] if " -> " not in line else line.split()[-3]: line
            for line in lines}


def test_gnu_cpio_lists_every_entry_with_its_type_and_mode():
    entries = listing(sample().to_bytes())
    assert set(entries) == {
        "bin", "bin/tool", "bin/sh", "dev", "dev/console", "tmp", "data",
        *[f"data/f{n}" for n in range(6)],
        "deep", "deep/er", "deep/er/still", "deep/er/still/file.txt"}
    assert entries["bin/tool"].startswith("-rwxr-xr-x")
    assert entries["bin/sh"].startswith("lrwxrwxrwx") and entries["bin/sh"].endswith("-> tool")
    assert entries["dev/console"].startswith("crw-------")
    assert "5,   1" in entries["dev/console"] or "5, 1" in entries["dev/console"]
    assert entries["tmp"].startswith("drwxrwxrwt")
    assert entries["deep/er"].startswith("drwxr-xr-x")  # parent added for us
    assert all(" root " in line for line in entries.values())


def test_parents_come_before_children():
    paths = [line.split()[-1] for line in
             run_cpio(["-t", "--quiet"], sample().to_bytes()).splitlines()]
    for i, path in enumerate(paths):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            assert paths.index("/".join(parts[:depth])) < i


def test_contents_come_back_byte_for_byte(tmp_path):
    archive = Archive()
    for n in range(6):
        archive.file(f"data/f{n}", bytes(range(n)))
    archive.file("bin/tool", b"#!/bin/sh\n", 0o750)
    run_cpio(["-i", "-d", "--quiet"], archive.to_bytes(), cwd=tmp_path)
    for n in range(6):
        assert (tmp_path / f"data/f{n}").read_bytes() == bytes(range(n))
    assert (tmp_path / "bin/tool").stat().st_mode & 0o777 == 0o750


def test_same_entries_give_the_same_bytes_whatever_the_order(tmp_path):
    forward, backward = sample(1), sample(-1)
    assert forward.to_bytes() == backward.to_bytes()
    forward.write(tmp_path / "a.gz", compress=True)
    backward.write(tmp_path / "b.gz", compress=True)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_gzip_output_is_the_plain_archive_compressed(tmp_path):
    sample().write(tmp_path / "initrd.img", compress=True)
    data = gzip.decompress((tmp_path / "initrd.img").read_bytes())
    assert data == sample().to_bytes()
    assert "dev/console" in listing(data)


def test_add_tree_copies_files_links_and_modes(tmp_path):
    src = tmp_path / "src"
    (src / "etc/init.d").mkdir(parents=True)
    (src / "etc/init.d/rcS").write_text("#!/bin/sh\n")
    (src / "etc/init.d/rcS").chmod(0o755)
    (src / "etc/link").symlink_to("init.d/rcS")
    archive = Archive()
    archive.add_tree(src, "root")
    entries = listing(archive.to_bytes())
    assert entries["root/etc/init.d/rcS"].startswith("-rwxr-xr-x")
    assert entries["root/etc/link"].endswith("-> init.d/rcS")


@pytest.mark.parametrize("bad", ["", "/", "../etc", "a/../../b"])
def test_paths_outside_the_archive_are_refused(bad):
    with pytest.raises(ValueError):
        Archive().file(bad, b"")
