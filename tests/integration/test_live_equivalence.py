"""Property: after any sequence of upserts, updates, deletes and compactions, the live index answers
exactly like a fresh full build of the same store (BM25 ids and scores to 1e-5, exact dense, hybrid),
overall and per collection."""
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live_helpers import assert_equivalent, rebuild_copy
from vfr.engine import Engine
from vfr.store.store import DescriptionRow, ImageRow, Store

pytestmark = pytest.mark.integration

IDS = [f"h{i}" for i in range(12)]
QUERIES = ["a dog chasing a cat", "red car next to a blue truck", "snow", "people walking at night",
           "a woman in a red coat", "sign"]

op = st.one_of(
    st.tuples(st.just("upsert"), st.sampled_from(IDS), st.integers(0, 179), st.sampled_from(["A", "B"])),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("update")),
    st.tuples(st.just("compact")),
)


@pytest.fixture(scope="module")
def sample_texts(template_store):
    with Store(template_store, read_only=True) as s:
        return [r.text for r in s.document_records_after(None, 1000)]


@settings(max_examples=int(__import__("os").environ.get("VFR_PROPERTY_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=14))
def test_any_operation_sequence_equals_a_full_rebuild(ops, template_store, sample_texts, tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    db = root / "s.duckdb"
    shutil.copy(template_store, db)  # its embedding cache covers every sample text: no encoding
    with Store(db) as s:  # keep 20 sample documents so statistics are not trivial
        s.delete([r.id for r in s.document_records_after(None, 1000)][20:])
    eng = Engine.open(db)
    eng.update_index()
    for o in ops:
        if o[0] == "upsert":
            _, doc_id, text, coll = o
            with Store(db) as s:
                s.upsert([ImageRow(doc_id, collection=coll)], [DescriptionRow(doc_id, sample_texts[text])])
        elif o[0] == "delete":
            eng.delete([o[1]])
        elif o[0] == "update":
            eng.update_index()
        else:
            eng.compact()
    eng.update_index()
    rebuilt = rebuild_copy(db, root / "rebuilt")
    try:
        assert_equivalent(eng, rebuilt, QUERIES, k=10, scopes=(None, "A"))
        assert eng.stats()["documents"] == rebuilt.stats()["documents"]
    finally:
        eng.close()
        rebuilt.close()
