"""One index writer at a time: a second waits for the lock (VFR_LOCK_TIMEOUT), then gives up with one line."""
import threading

import pytest

from vfr.retrieve.generations import IndexError_, writer_lock


def test_a_second_writer_gives_up_with_a_clear_message(tmp_path):
    with writer_lock(tmp_path / "i", 1.0):
        with pytest.raises(IndexError_, match="another vfr process is writing the index .* raise VFR_LOCK_TIMEOUT"):
            with writer_lock(tmp_path / "i", 0.2):
                pass


def test_a_second_writer_waits_for_the_first(tmp_path):
    held, release, order = threading.Event(), threading.Event(), []

    def first():
        with writer_lock(tmp_path / "i", 1.0):
            held.set()
            release.wait(30)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait(30)
    threading.Timer(0.3, release.set).start()
    with writer_lock(tmp_path / "i", 60.0):  # waits, then proceeds
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]


def test_an_index_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "i").write_text("mine")
    with pytest.raises(IndexError_, match="is a file, not an index folder"):
        with writer_lock(tmp_path / "i", 0.1):
            pass
    assert (tmp_path / "i").read_text() == "mine"
