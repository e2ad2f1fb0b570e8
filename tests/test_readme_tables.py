"""`python -m core.report --readme` replaces each table in place and nothing around it."""
import pytest

from core.cards.report import replace_table


def test_replace_table_swaps_only_the_table_with_that_header():
    text = "intro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\nafter\n| c |\n|---|\n| 9 |\n"
    out = replace_table(text, "| a | b |\n|---|---|\n| 5 | 6 |")
    assert out == "intro\n\n| a | b |\n|---|---|\n| 5 | 6 |\n\nafter\n| c |\n|---|\n| 9 |\n"
    assert replace_table(out, "| c |\n|---|\n| 7 |\n| 8 |").endswith("after\n| c |\n|---|\n| 7 |\n| 8 |\n")


def test_a_table_the_readme_does_not_have_is_refused():
    with pytest.raises(ValueError, match="no table"):
        replace_table("| a |\n|---|\n", "| z |\n|---|\n| 1 |")
