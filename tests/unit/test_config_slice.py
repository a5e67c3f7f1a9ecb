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
