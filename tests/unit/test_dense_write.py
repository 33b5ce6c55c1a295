"""Writing a segment's FAISS file when the disk is full: an OSError (ENOSPC) the CLI turns into one clean line,
and nothing printed behind its back. faiss.write_index, given /dev/full, printed "… close error: …" to stderr
(no newline, so the CLI's error line was garbled) and returned as if it had written the file."""
import errno
from pathlib import Path

import numpy as np
import pytest

from vfr.retrieve.dense import DenseSegment, write_dense

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")


def test_a_full_disk_raises_enospc_and_prints_nothing(tmp_path, capfd):
    (tmp_path / "dense.faiss").symlink_to("/dev/full")
    vectors = np.random.default_rng(0).random((50, 8), dtype=np.float32)
    with pytest.raises(OSError) as e:
        write_dense(tmp_path, vectors, "flat")
    assert e.value.errno == errno.ENOSPC
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_what_is_written_reads_back(tmp_path):
    vectors = np.random.default_rng(1).random((50, 8), dtype=np.float32)
    assert write_dense(tmp_path, vectors, "flat") == "flat"
    seg = DenseSegment(tmp_path, "flat")
    assert seg.rows == 50
    np.testing.assert_allclose(seg.index.reconstruct(7), vectors[7], rtol=1e-6)
