"""Capacity (the overfit stage): a budget-limited curve is not a capacity limit."""



def test_still_falling_tells_the_budget_from_a_plateau() -> None:
    """A loss that keeps falling over the last quarter of the budget is held back by the
    budget (info); a plateau is a capacity limit (the warning)."""
    from nnrecipe.overfit.capacity import still_falling

    falling = [(s, 1.0 * 0.995 ** s) for s in range(0, 301, 30)]  # -31% over the last 75 steps
    plateau = [(s, 0.4 + 0.6 * 0.9 ** s) for s in range(0, 301, 30)]
    assert still_falling(falling)
    assert not still_falling(plateau)
    assert not still_falling([(0, 1.0), (300, 0.5)])  # too few points to say
