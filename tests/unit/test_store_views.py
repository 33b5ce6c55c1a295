"""How the store makes an image's document from its descriptions (store/changes.py COMBINE): the newest one, or
every model's newest joined. Plain DuckDB, no index."""
import pytest

from vfr.store.changes import JOIN_SEPARATOR, JOINED_PREFIX, cacheable
from vfr.store.store import DescriptionRow as D
from vfr.store.store import Store, text_hash


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
