"""The host-side folder watch the agent's build loop waits on (real inotify)."""

import os
import time

from revive.core import dirwatch


def test_a_write_a_close_and_a_new_file_wake_the_wait(tmp_path):
    with dirwatch.DirWatch(tmp_path) as watch:
        assert not watch.polling
        start = time.monotonic()
        assert watch.wait(0.1) == []
        assert 0.09 < time.monotonic() - start < 1
        with open(tmp_path / "out", "wb") as fh:
            fh.write(b"x")
            fh.flush()
            assert any(m & dirwatch.IN_MODIFY and n == "out" for m, n in watch.wait(1))
        events = watch.wait(1)
        assert any(m & dirwatch.IN_CLOSE_WRITE and n == "out" for m, n in events)
        (tmp_path / "out.done").touch()
        assert any(n == "out.done" for _, n in watch.wait(1))
        os.unlink(tmp_path / "out")
        assert any(m & dirwatch.IN_DELETE and n == "out" for m, n in watch.wait(1))


def test_a_folder_that_cannot_be_watched_falls_back_to_short_waits(tmp_path):
    watch = dirwatch.DirWatch(tmp_path / "missing")
    assert watch.polling
    start = time.monotonic()
    assert watch.wait(5) == [(dirwatch.IN_Q_OVERFLOW, "")]
    assert time.monotonic() - start < 1
    watch.close()
