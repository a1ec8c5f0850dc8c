"""viz.markdown_table: the chapters' tables, printed as Markdown so that they fit the text column."""

import pytest

from bilevel_lib.book import viz


def test_markdown_table_aligns_numbers_right_and_text_left():
    table = viz.markdown_table(["method", "SNR (dB)", "time"], [["TV", "16.20", "13×"], ["a | b", "-2.5", "1e-3"]])
    lines = table.data.split("\n")
    assert lines == [
        "| method | SNR (dB) | time |",
        "| :--- | ---: | ---: |",
        "| TV | 16.20 | 13× |",
        "| a \\| b | -2.5 | 1e-3 |",
    ]


def test_markdown_table_takes_an_explicit_alignment_and_any_entries():
    table = viz.markdown_table(("n", "x"), [(1, 2.5)], align="cl")
    assert table.data.split("\n")[1:] == ["| :---: | :--- |", "| 1 | 2.5 |"]


@pytest.mark.parametrize(
    ("header", "rows", "align", "error", "match"),
    [
        ([], [], None, ValueError, "header must be a non-empty sequence"),
        ("ab", [], None, ValueError, "header must be a non-empty sequence"),
        (["a", "b"], [["1"]], None, ValueError, r"row 0 has 1 entries; expected 2"),
        (["a", "b"], [["1", "2"], ["3"]], None, ValueError, r"row 1 has 1 entries"),
        (["a"], "rows", None, TypeError, "rows must be a sequence of rows; got str"),
        (["a"], 3, None, TypeError, "rows must be a sequence of rows; got int"),
        (["a", "b"], [], "l", ValueError, "align must be a string of l, r or c, one per column"),
        (["a"], [], "x", ValueError, "align must be a string of l, r or c"),
    ],
)
def test_markdown_table_rejects_bad_input(header, rows, align, error, match):
    with pytest.raises(error, match=match):
        viz.markdown_table(header, rows, align=align)
