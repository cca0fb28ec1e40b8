"""The static catalogue `nnrecipe codes` reads agrees with the registry, and says what each code
means (the problem, not the passing statement of its check)."""

from __future__ import annotations

from nnrecipe.report.catalogue import PROBLEMS, build_table, load_table


def test_static_table_matches_the_registry() -> None:
    assert load_table() == build_table(), (
        "src/nnrecipe/report/catalogue.json is stale: regenerate it with "
        "`python -m nnrecipe.report.catalogue`")


def test_every_code_says_what_it_means() -> None:
    codes = {row["code"] for row in build_table()}
    missing = sorted(codes - set(PROBLEMS))
    assert not missing, f"add the problem each code names to report/catalogue.py PROBLEMS: {missing}"
    assert not sorted(set(PROBLEMS) - codes), "PROBLEMS names codes nobody declares"


def test_meaning_is_not_the_checks_passing_statement() -> None:
    rows = {row["code"]: row for row in load_table()}
    # the check verifies that gradients ARE cleared; the code means they are NOT
    assert rows["grads-not-zeroed"]["title"].startswith("Gradients are cleared")
    assert "accumulate" in rows["grads-not-zeroed"]["means"]
    assert rows["data-duplicates"]["means"].startswith("Exact or near-duplicate")
