import doctest

import elision.budget


def test_budget_docstring_examples():
    assert doctest.testmod(elision.budget).failed == 0
