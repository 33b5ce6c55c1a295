"""Help text reads as prose: docstrings wrapped at the source's width are rejoined per paragraph, lists keep
their lines, and the command list shows whole first sentences (vfr/cli.py reflow)."""
import inspect

from typer.testing import CliRunner

from vfr.cli import app, reflow


def test_reflow_joins_prose_and_keeps_paragraphs_and_lists():
    text = """First line of a
    summary.

    A second paragraph wrapped
    at the source width.

    * an item
      continued
    * another"""
    assert reflow(text) == ("First line of a summary.\n\nA second paragraph wrapped at the source width.\n\n"
                            "* an item\n  continued\n* another")
    assert reflow("\b\nkeep\nas is") == "\b\nkeep\nas is"


def test_every_command_help_is_reflowed_and_the_command_list_shows_whole_summaries():
    def commands(typer_app):
        yield from typer_app.registered_commands
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)
    infos = list(commands(app))
    assert len(infos) > 15
    for info in infos:
        assert info.help == reflow(info.help), info.name
    # a summary wrapped in its docstring (`vfr index`'s) used to be cut at its first line break in the list
    doc = inspect.getdoc(next(i.callback for i in infos if i.name == "index"))
    assert "\n" in doc.split("\n\n")[0]
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "(added, changed and deleted documents)" in out


def test_stats_for_people_nests_tables_lists_records_and_caps_long_tables():
    from vfr.cmd_store import stats_lines
    lines = stats_lines({"images": 3, "collections": {f"c{i}": i for i in range(25)},
                         "descriptions_by_model": [{"model": "m", "count": 3}], "index": {}}, width=8, most=20)
    assert lines[0] == "  images: 3" and lines[1] == "collections:"
    assert lines[2] == "          c0: 0" and lines[21] == "          c19: 19"
    assert lines[22] == "          … 5 more (--json lists all)"
    assert lines[23:25] == ["descriptions_by_model:", "          model m, count 3"]
    assert lines[25] == "   index: {}"
