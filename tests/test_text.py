"""The one check for text entering the daemon, and what a terminal is shown."""

from __future__ import annotations

import pytest

from infiniloopd.text import printable, terminal_safe, text_problem


@pytest.mark.parametrize(
    ("value", "kw", "problem"),
    [
        ("calm pads", {}, None),
        ("é🎵 ñ", {}, None),
        ("a\tb", {"name": False}, None),
        ("a\nb", {"name": False}, None),
        ("a\nb", {}, "contains a control character (U+000A)"),
        ("bell\x07", {"name": False}, "contains a control character (U+0007)"),
        ("csi\x9b", {}, "contains a control character (U+009B)"),
        ("nul\0", {"name": False}, "contains a control character (U+0000)"),
        ("calm \ud800", {}, "not valid UTF-8 (U+D800 at character 5)"),
        ("\udcff", {}, "not valid UTF-8 (U+DCFF at character 0)"),
        ("x" * 11, {"max_len": 10}, "longer than 10 characters"),
        ("  ", {}, "empty"),
        ("", {"nonempty": False}, None),
        (5, {}, "not text"),
        (None, {}, "not text"),
    ],
)
def test_text_problem(value, kw, problem):
    assert text_problem(value, **kw) == problem


def test_printable_and_terminal_safe():
    assert printable("a\x1b[2Jb\nc\ud800") == "a\ufffd[2Jb\ufffdc?"
    assert terminal_safe("line 1\n\tline 2 \x1b]0;title\x07 \udcff") == (
        "line 1\n\tline 2 \ufffd]0;title\ufffd ?"
    )
