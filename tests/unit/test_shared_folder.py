"""The build's up-to-date check on a shared folder: one digest in doit's
database, a record of stamps and hashes beside it, and the changed files
named for `doit info`."""

import os
import time

from revive.core import tree, treeimage
from tasks.common import shared_folder


class Task:
    def __init__(self):
        self.value_savers = []


def checked(folder, record, values):
    check = shared_folder("hello.src", folder, record)
    task = Task()
    check.configure_task(task)
    fresh = check(task, values)
    return check, fresh, task


def succeed(check, task):
    """What doit does after a successful run: the value savers' values."""
    values = {}
    for save in task.value_savers:
        values.update(save())
    return values


def recorded(tmp_path, files: dict):
    """A shared folder holding ``files`` (name → text, or a link target for
    names starting with '@'), checked once and recorded as a success."""
    folder, record = tmp_path / "src", tmp_path / "r.json"
    folder.mkdir()
    for name, text in files.items():
        if name.startswith("@"):
            (folder / name[1:]).symlink_to(text)
        else:
            (folder / name).write_text(text)
    check, _, task = checked(folder, record, {})
    return folder, record, succeed(check, task)


def test_a_change_to_one_file_among_many_is_found_and_named(tmp_path):
    folder, record = tmp_path / "src", tmp_path / "trees" / "hello.src.json"
    for i in range(300):
        (folder / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{i % 7}" / f"f{i}.c").write_text(f"int f{i};\n")
    check, fresh, task = checked(folder, record, {})
    assert not fresh and str(check).endswith("no successful run recorded")
    values = succeed(check, task)
    assert list(values) == ["_tree_hello.src"] and len(values["_tree_hello.src"]) == 64

    check, fresh, _ = checked(folder, record, values)
    assert fresh and check.changes == []

    (folder / "d3" / "f10.c").write_text("int f10 = 1;\n")
    (folder / "d0" / "new.h").write_text("")
    os.unlink(folder / "d1" / "f1.c")
    check, fresh, _ = checked(folder, record, values)
    assert not fresh
    assert check.changes == [f"{folder}/d0/new.h added", f"{folder}/d1/f1.c removed",
                             f"{folder}/d3/f10.c changed"]
    assert f"{folder}/d3/f10.c changed" in str(check)


def test_a_touch_is_not_a_change_and_is_hashed_once(tmp_path, monkeypatch):
    folder, record, values = recorded(tmp_path, {"a": "a", "run.sh": "echo"})
    os.utime(folder / "a", ns=(1, 1))
    check, fresh, _ = checked(folder, record, values)
    assert fresh
    read = []
    real = tree.sha256_file
    monkeypatch.setattr(tree, "sha256_file", lambda p: read.append(p) or real(p))
    check, fresh, _ = checked(folder, record, values)
    assert fresh and read == []          # the new stamp was remembered
    # A mode change is a change (the guest sees it).
    (folder / "run.sh").chmod(0o755)
    check, fresh, _ = checked(folder, record, values)
    assert not fresh and check.changes == [f"{folder}/run.sh changed"]


def test_links_are_hashed_by_target_not_followed(tmp_path):
    folder, record, values = recorded(tmp_path, {"@link": "/etc/passwd"})
    assert tree.scan(folder, {})["link"][0] == "link"
    (folder / "link").unlink()
    (folder / "link").symlink_to("/etc/hostname")
    check, fresh, _ = checked(folder, record, values)
    assert not fresh and check.changes == [f"{folder}/link changed"]


def test_a_damaged_record_means_hashing_again_not_a_wrong_answer(tmp_path):
    folder, record, values = recorded(tmp_path, {"a": "a"})
    record.write_bytes(b"\x00garbage")
    check, fresh, _ = checked(folder, record, values)
    assert fresh
    (folder / "a").write_text("b")
    record.write_bytes(b"")
    check, fresh, _ = checked(folder, record, values)
    assert not fresh and "content differs" in str(check)


def test_a_no_op_takes_the_listing_and_reads_no_record(tmp_path, monkeypatch):
    folder, record, values = recorded(tmp_path, {"a.c": "int a;\n"})
    assert tree.listing(folder) is not None

    def no_scan(*args):
        raise AssertionError("scanned although nothing changed")
    monkeypatch.setattr(tree, "scan", no_scan)
    check, fresh, _ = checked(folder, record, values)
    assert fresh
    monkeypatch.undo()
    # Rewritten with its size and mtime put back: the ctime still tells.
    st = os.stat(folder / "a.c")
    (folder / "a.c").write_text("int b;\n")
    os.utime(folder / "a.c", ns=(st.st_atime_ns, st.st_mtime_ns))
    check, fresh, _ = checked(folder, record, values)
    assert not fresh and check.changes == [f"{folder}/a.c changed"]


def test_the_revive_takes_the_check_s_listing_only_of_the_files_it_hashed(tmp_path, monkeypatch):
    folder, record = tmp_path / "src", tmp_path / "r.record"
    folder.mkdir()
    for name in ("a.c", "b.c"):
        (folder / name).write_text(name)
    time.sleep(1.1)                       # older than the listing's margin
    treeimage._remembered.clear()
    check, fresh, task = checked(folder, record, {})
    assert not fresh
    assert treeimage._remembered.pop(folder.resolve()) == tree.stamps(folder)
    values = succeed(check, task)
    check, fresh, _ = checked(folder, record, values)
    assert fresh and treeimage._remembered.pop(folder.resolve()) == tree.stamps(folder)

    real = tree.scan
    for between in (lambda: (folder / "a.c").write_text("new"),
                    lambda: (folder / "b.c").unlink()):
        (folder / "c.c").write_text("c")  # a change the listing sees
        time.sleep(1.1)

        def scan_after_a_change(*args):
            between()                     # after the listing, before the hashing
            return real(*args)
        monkeypatch.setattr(tree, "scan", scan_after_a_change)
        check, fresh, _ = checked(folder, record, values)
        assert not fresh and folder.resolve() not in treeimage._remembered
        (folder / "c.c").unlink()


def test_a_listing_started_early_survives_doit_forking_its_workers(tmp_path):
    """`doit -n 2` forks its workers from the process whose checks started
    the listings. A worker forked while find was being started must not
    hold find's output open (the first build then waited for the listing's
    600 s deadline), and a worker must list again rather than take a find
    it cannot wait on."""
    folders = []
    for n in range(20):
        folder = tmp_path / f"src{n}"
        folder.mkdir()
        for i in range(50):
            (folder / f"f{i}").write_text(str(i))
        folders.append(folder)
    workers = []
    try:
        for folder in folders:
            tree.list_early(folder)
            pid = os.fork()             # as multiprocessing's fork does
            if pid == 0:
                code = 4
                try:
                    found, _ = tree.listed(folder)
                    code = 0 if found == tree.stamps(folder) else 3
                    time.sleep(8)       # a worker lives while builds run
                finally:
                    os._exit(code)
            workers.append(pid)
        # The first worker still runs: the parent's listings must end now.
        for folder in folders:
            start = time.monotonic()
            found, _ = tree.listed(folder)
            assert time.monotonic() - start < 5, f"the listing of {folder.name} waited on a worker"
            assert found == tree.stamps(folder)
            assert found.count(b"\0") == 2 * 51
    finally:
        for pid in workers:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, "a forked worker's listing was wrong"


def test_a_listing_that_hangs_says_what_doit_waits_for_and_ends(tmp_path, monkeypatch, capsys):
    """A folder on a filesystem that stops answering (a fault no real folder
    makes on demand: a `sleep` stands in for GNU find): a line every
    LIST_NOTICE seconds names the folder, and at LIST_TIMEOUT find is
    killed and the build goes on without a listing."""
    import subprocess
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a")
    slow = []

    def hung_find(folder, stdout):
        proc = subprocess.Popen(["sleep", "30"], stdout=stdout, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        slow.append(proc)
        return proc
    monkeypatch.setattr(tree, "_find", hung_find)
    monkeypatch.setattr(tree, "LIST_NOTICE", 0.4)
    monkeypatch.setattr(tree, "LIST_TIMEOUT", 1.5)
    for early in (True, False):
        if early:
            tree.list_early(tmp_path / "src")
        start = time.monotonic()
        found, _ = tree.listed(tmp_path / "src")
        assert found is None and time.monotonic() - start < 10
        assert slow[-1].poll() is not None                 # find was killed and reaped
        err = capsys.readouterr().err.splitlines()
        waiting = [line for line in err if "waiting for GNU find" in line]
        assert len(waiting) >= 2 and str(tmp_path / "src") in waiting[0]
        assert "did not list" in err[-1]
