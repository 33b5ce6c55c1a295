"""How the store makes an image's document from its descriptions (store/changes.py COMBINE): the newest one, or
every model's newest joined. Plain DuckDB, no index."""
import numpy as np
import pytest

from vfr.store.changes import JOIN_SEPARATOR, JOINED_PREFIX, cacheable
from vfr.store.store import DescriptionRow as D
from vfr.store.store import ImageRow, Store, StoreError, text_hash


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upsert([], [D("a", "a kite, by m1", model="m1"), D("b", "b alone", model="m2")])
        s.upsert([], [D("a", "a beach, by m2", model="m2")])
        yield s


def test_every_model_joins_each_models_description_in_model_order(store):
    a = store.document_records(["a"], "every-model")["a"]
    assert a.text == "a kite, by m1" + JOIN_SEPARATOR + "a beach, by m2"
    assert a.models == ("m1", "m2") and a.payload()["models"] == ["m1", "m2"]
    assert a.model == "m2"  # display fields are the newest description's
    assert a.text_hash.startswith(JOINED_PREFIX) and not cacheable(a.text_hash)
    newest = store.document_records(["a"])["a"]
    assert newest.text == "a beach, by m2" and newest.text_hash == text_hash(newest.text)
    assert "models" not in newest.payload()


def test_one_describer_gives_the_same_document_either_way(store):
    one = store.document_records(["b"], "every-model")["b"]
    assert one == store.document_records(["b"])["b"]
    assert one.text_hash == text_hash("b alone") and cacheable(one.text_hash)  # the embedding cache still serves it


def test_a_new_prompt_version_revises_its_models_view_not_adds_one(store):
    store.upsert([], [D("a", "a kite at dusk, by m1 v2", model="m1", prompt_version="v2")])
    a = store.document_records(["a"], "every-model")["a"]
    assert a.text == "a kite at dusk, by m1 v2" + JOIN_SEPARATOR + "a beach, by m2"
    assert a.prompt_version == "v2" and a.models == ("m1", "m2")


def test_paging_and_missing_ids(store):
    paged = [r for r in store.iter_document_records(batch=1, combine="every-model")]
    assert [r.id for r in paged] == ["a", "b"]
    assert paged[0] == store.document_records(["a"], "every-model")["a"]
    assert store.document_records(["zz", "a"], "every-model").keys() == {"a"}
    assert store.document_records_after("a", 10, "every-model")[0].id == "b"


def test_quotes_and_control_characters_survive_the_join(tmp_path):
    with Store(tmp_path / "q.duckdb") as s:
        s.upsert([], [D("x", "it's a \"sign\"\tsaying\nOPEN", model="o'brien"), D("x", "second", model="z")])
        assert s.document_records(["x"], "every-model")["x"].text == \
            "it's a \"sign\"\tsaying\nOPEN" + JOIN_SEPARATOR + "second"


def test_unknown_combine_is_refused(store):
    with pytest.raises(ValueError, match="newest, every-model"):
        store.document_records(["a"], "all")


def test_index_config_validates_it():
    from vfr.retrieve.writer import IndexConfig

    # a fusion tuned for an encoder serves joined documents too: tuned on coco-val's joined descriptions, the
    # built-in fusion stays (docs/views.md), as it does on single ones
    assert IndexConfig(descriptions="every-model").scoring() == IndexConfig().scoring()
    assert IndexConfig(descriptions="every-model").to_dict()["descriptions"] == "every-model"
    with pytest.raises(ValueError, match="descriptions must be one of"):
        IndexConfig(descriptions="longest")
    with pytest.raises(ValueError, match="--bm25-fields"):
        IndexConfig(descriptions="every-model", fields=(("caption", 0.5),))


def test_retracting_a_describer_keeps_the_other_views(store):
    store.upsert([], [D("a", "a kite at dusk, by m1 v2", model="m1", prompt_version="v2")])
    store.cache_embeddings("enc", [text_hash("b alone"), text_hash("a beach, by m2")], np.ones((2, 3), "<f4"))
    seq = store.current_seq()
    gone = store.delete_descriptions("m2")
    assert (gone.descriptions, gone.images, gone.undescribed) == (2, ["a", "b"], ["b"])
    assert store.changes_since(seq).ids == ["a", "b"]
    assert store.document_records(["a", "b"], "every-model").keys() == {"a"}
    a = store.document_records(["a"], "every-model")["a"]
    assert a.text == "a kite at dusk, by m1 v2" and a.models == ("m1",)
    assert store.document_records(["a"])["a"].text == "a kite at dusk, by m1 v2"
    assert store.cached_embeddings("enc", [text_hash("b alone"), text_hash("a beach, by m2")]) == {}
    assert store.count_documents() == 1


def test_retracting_a_describer_in_one_collection_leaves_the_others(store):
    store.upsert([ImageRow("a", collection="red"), ImageRow("b", collection="blue"), ImageRow("c", collection="blue")],
                 [D("c", "c by m3, blue only", model="m3")])
    seq = store.current_seq()
    gone = store.delete_descriptions("m2", collection="blue")
    assert (gone.descriptions, gone.images, gone.undescribed) == (1, ["b"], ["b"])
    assert store.changes_since(seq).ids == ["b"]
    assert store.document_records(["a"])["a"].text == "a beach, by m2"  # red's view of m2 stays
    # nothing of m2 is left in blue; the refusal lists blue's describers only, never red's (m1)
    with pytest.raises(StoreError, match=r"in collection 'blue'; collection 'blue' has: m3 none \(1\) \(") as e:
        store.delete_descriptions("m2", collection="blue")
    assert "m1" not in str(e.value)
    with pytest.raises(StoreError, match="collection 'green' has: no descriptions"):
        store.delete_descriptions("m1", collection="green")
    assert store.current_seq() == seq + 1


def test_retracting_one_prompt_version_and_refusing_an_unknown_one(store):
    store.upsert([], [D("a", "a kite at dusk, by m1 v2", model="m1", prompt_version="v2")])
    gone = store.delete_descriptions("m1", prompt_version="none")
    assert (gone.descriptions, gone.undescribed) == (1, [])
    assert store.document_records(["a"], "every-model")["a"].text == \
        "a kite at dusk, by m1 v2" + JOIN_SEPARATOR + "a beach, by m2"
    seq = store.current_seq()
    with pytest.raises(StoreError, match=r"no descriptions by model 'm1' with prompt version 'none'.*m1 v2 \(1\)"):
        store.delete_descriptions("m1", prompt_version="none")
    with pytest.raises(StoreError, match="no descriptions by model 'nobody'"):
        store.delete_descriptions("nobody")
    assert store.current_seq() == seq  # a refused retraction logs nothing
