import pytest

from vfr.queries import QueryFileError as ServiceError, fusion_config, read_queries


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
    ('{"id": "a", "text": "x"\n', ":1: not valid JSON"),
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
    cfg = fusion_config("rrf", "0.5,0.5", "minmax", 50)
    assert cfg.method == "rrf" and cfg.weights == (0.5, 0.5) and cfg.depth == 50
    for bad in [("convex", "x,y", None, None), ("convex", "1", None, None), ("convex", "-1,2", None, None)]:
        with pytest.raises(ServiceError, match="bad fusion"):
            fusion_config(*bad)


def test_bom_does_not_turn_the_first_jsonl_line_into_text(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a", "text": "red bus"}\n{"id": "b", "text": "cat"}\n')
    assert read_queries(f) == {"a": "red bus", "b": "cat"}
    g = tmp_path / "q.txt"
    g.write_bytes(b"\xef\xbb\xbfred bus\ncat\n")
    assert read_queries(g) == {"q1": "red bus", "q2": "cat"}


@pytest.mark.parametrize("weights", ["nan,1", "inf,1", "1,-inf"])
def test_non_finite_weights_are_refused(weights):
    with pytest.raises(ServiceError, match="finite"):
        fusion_config("convex", weights, None, None)


def test_queries_stream_lazily(tmp_path):
    """A bad line far down the file is only reached after earlier chunks were produced."""
    from vfr.queries import chunks, iter_queries

    f = tmp_path / "q.txt"
    f.write_text("".join(f"query {i}\n" for i in range(1000)) + "\xff".encode("latin-1").decode("latin-1"))
    f.write_bytes(f.read_bytes().replace("ÿ".encode(), b"\xff"))
    stream = chunks(iter_queries(f), 256)
    first = next(stream)
    assert len(first) == 256 and first["q1"] == "query 0"
    with pytest.raises(ServiceError, match=":1001: not UTF-8"):
        list(stream)
