import pytest

from vfr.search_service import SearchService, ServiceError, read_queries


def test_jsonl_and_plain_text(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "a", "text": "red bus"}\n\n{"id": 7, "text": "cat"}\n')
    assert read_queries(f) == {"a": "red bus", "7": "cat"}
    g = tmp_path / "q.txt"
    g.write_text("red bus\n\ncat on a mat\n")
    assert read_queries(g) == {"q1": "red bus", "q3": "cat on a mat"}


@pytest.mark.parametrize("content,needle", [
    ('{"id": "a"}\n', ":1: expected"),
    ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', ":2: duplicate query id"),
    ('{"id": "a", "text": 3}\n', "'text' must be a string"),
    ("\n\n", "no queries"),
    ('{"id": "a", "text": "x"\n', ":1: expected"),
])
def test_bad_query_files(tmp_path, content, needle):
    f = tmp_path / "q.jsonl"
    f.write_text(content)
    with pytest.raises(ServiceError, match=needle):
        read_queries(f)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ServiceError, match="no such file"):
        read_queries(tmp_path / "nope")
    b = tmp_path / "b.bin"
    b.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ServiceError, match="not UTF-8"):
        read_queries(b)


def test_fusion_settings_are_validated():
    cfg = SearchService.fusion_config("rrf", "0.5,0.5", "minmax", 50)
    assert cfg.method == "rrf" and cfg.weights == (0.5, 0.5) and cfg.depth == 50
    for bad in [("convex", "x,y", None, None), ("convex", "1", None, None), ("convex", "-1,2", None, None)]:
        with pytest.raises(ServiceError, match="bad fusion"):
            SearchService.fusion_config(*bad)
