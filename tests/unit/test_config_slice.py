"""A stage's config slice: up to date when equal, and says which key changed."""

from tasks.common import config_slice


def saved(slice_):
    class Task:
        value_savers = []
    task = Task()
    slice_.configure_task(task)
    return task.value_savers[0]()


def test_unchanged_slice_is_up_to_date():
    before = saved(config_slice("vm", {"memory_mb": 512, "cpus": 1}))
    now = config_slice("vm", {"cpus": 1, "memory_mb": 512})
    assert now(None, before) is True


def test_a_changed_key_is_named():
    before = saved(config_slice("shares", {"src": {"guest": "/mnt/src", "mode": "ro"}}))
    now = config_slice("shares", {"src": {"guest": "/mnt/in", "mode": "ro"},
                                  "data": {"guest": "/d"}})
    assert now(None, before) is False
    text = str(now)
    assert "src.guest: '/mnt/src' -> '/mnt/in'" in text
    assert "data added" in text
    assert "mode" not in text


def test_first_run_is_stale():
    now = config_slice("x", {"a": 1})
    assert now(None, {}) is False
    assert "no successful run" in str(now)


def code(root, monkeypatch, name="payload"):
    from tasks.common import code_files
    monkeypatch.setattr(code_files, "ROOT", root)
    return code_files(name, sorted(p for p in root.rglob("*") if p.is_file()))


def tree(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_same_code_at_another_path_is_up_to_date(tmp_path, monkeypatch):
    files = {"revive/guests/tiny/etc/init": "one", "revive/formats/cpio.py": "two"}
    before = saved(code(tree(tmp_path / "a", files), monkeypatch))
    now = code(tree(tmp_path / "elsewhere" / "b", files), monkeypatch)
    assert now(None, before) is True


def test_a_changed_added_or_removed_file_is_named(tmp_path, monkeypatch):
    before = saved(code(tree(tmp_path / "a", {"revive/x.py": "1", "revive/gone.py": "2"}),
                        monkeypatch))
    now = code(tree(tmp_path / "b", {"revive/x.py": "1 changed", "revive/new.py": "3"}),
               monkeypatch)
    assert now(None, before) is False
    text = str(now)
    assert "revive/x.py changed" in text
    assert "revive/new.py added" in text
    assert "revive/gone.py removed" in text
    assert str(tmp_path) not in text


def test_code_first_run_is_stale(tmp_path, monkeypatch):
    now = code(tree(tmp_path, {"f": "1"}), monkeypatch)
    assert now(None, {}) is False
    assert "no successful run" in str(now)
