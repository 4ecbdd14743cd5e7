import pytest

from elision import InvalidInput
from elision.parsing import parse_bool


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", " On\n"])
def test_true_spellings(text):
    assert parse_bool(text, "flag") is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off", " off "])
def test_false_spellings(text):
    assert parse_bool(text, "flag") is False


def test_bools_pass_through():
    assert parse_bool(True, "flag") is True and parse_bool(False, "flag") is False


@pytest.mark.parametrize("value", ["", "maybe", "y", "2", 1, 0, None, 1.0])
def test_anything_else_names_the_setting_and_the_spellings(value):
    with pytest.raises(InvalidInput, match=r"ELISION_LOG_PROMPTS must be true or false \(1/true/yes/on or "
                                           r"0/false/no/off\)"):
        parse_bool(value, "ELISION_LOG_PROMPTS")
