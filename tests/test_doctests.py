import doctest

import elision.budget
import elision.parsing


def test_budget_docstring_examples():
    assert doctest.testmod(elision.budget).failed == 0


def test_parsing_docstring_examples():
    assert doctest.testmod(elision.parsing).failed == 0
