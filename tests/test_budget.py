import pytest
from hypothesis import given, strategies as st

from sftpick.selectors import parse_budget


@pytest.mark.parametrize("budget, n, expected", [
    (2000, 10_000, 2000), ("2000", 10_000, 2000), (0.05, 10_000, 500), ("0.05", 10_000, 500),
    ("5%", 10_000, 500), ("5%", 30, 2), ("100%", 7, 7), (50, 7, 7), ("0.5%", 100, 1),
])
def test_budgets(budget, n, expected):
    assert parse_budget(budget, n) == expected


@pytest.mark.parametrize("budget, match", [
    ("abc", "should be a count"), ("-3", "should be a count"), (0, "at least one"),
    ("150%", "outside"), ("1.5", "fraction outside"),
])
def test_bad_budgets(budget, match):
    with pytest.raises(ValueError, match=match):
        parse_budget(budget, 100)


@given(st.integers(1, 10_000), st.floats(0.0001, 1.0))
def test_fraction_budget_is_within_bounds(n, fraction):
    count = parse_budget(fraction, n)
    assert 1 <= count <= n and count >= fraction * n - 1e-6
