"""`python -m core.report --readme` (and `--write` for docs/evaluation.md) replaces each table in place and nothing
around it; the README's one generated table, "What ships", is what the bundled cards say."""
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


def test_readme_what_ships_table_matches_the_cards():
    """Reads only the cards and field records in models/ (no dataset): regenerate, never hand-edit."""
    from core.cards.report import shipped_table
    from core.config import REPO_ROOT
    from core.fields.records import field_model
    from core.models.selection import default_model
    from core.registry import TASKS

    table = shipped_table()
    assert table in (REPO_ROOT / "README.md").read_text(), "README's What ships is stale: python -m core.report --readme"
    rows = table.split("\n")[2:]
    assert len(rows) == len(TASKS) + 1  # one row per task's default, then whole fields
    for row, task in zip(rows, TASKS):
        assert f"| {TASKS[task].title} | `{default_model(task)}` |" in row and "AUC " in row
    assert f"`{field_model()}`" in rows[-1] and "false infected cells per field" in rows[-1]


def test_the_readme_stays_short_and_links_its_docs():
    from core.config import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for doc in ("app", "models", "evaluation", "inputs", "handoff", "scale"):
        assert f"(docs/{doc}.md)" in text and (REPO_ROOT / "docs" / f"{doc}.md").is_file(), doc


def test_evaluation_doc_field_table_matches_the_records():
    """docs/evaluation.md's whole-field table is `python -m core.report --write`'s rendering of the fields.json records."""
    from core.config import REPO_ROOT
    from core.fields.records import record_table

    assert record_table() in (REPO_ROOT / "docs" / "evaluation.md").read_text(), \
        "docs/evaluation.md field table is stale: python -m core.report --write"


def test_the_evaluation_doc_shows_the_age_group_check_as_its_card_says():
    from core.cards.report import age_check_table
    from core.config import REPO_ROOT

    assert age_check_table() in (REPO_ROOT / "docs" / "evaluation.md").read_text(), \
        "docs/evaluation.md age-group table is stale: python -m core.report --write"
