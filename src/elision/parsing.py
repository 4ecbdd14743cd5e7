"""Text from the outside world (flags, environment variables, HTTP headers, method options)
turned into typed values, one spelling table for the whole package.

    >>> parse_bool("Yes", "ELISION_LOG_PROMPTS")
    True
    >>> parse_bool(" off ", "X-Elision-Off")
    False

Not handled: numbers as booleans (1 and 0 are accepted as the strings "1" and "0" only), and
empty strings, which mean "not given" to some callers and are theirs to skip.
"""

from __future__ import annotations

from ._errors import InvalidInput

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_bool(value: object, name: str) -> bool:
    """A bool as it is, or one of 1/true/yes/on, 0/false/no/off (any case, surrounding white
    space ignored); anything else raises InvalidInput naming `name` and the accepted spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
    raise InvalidInput(f"{name} must be true or false ({'/'.join(TRUE)} or {'/'.join(FALSE)}), got {value!r}")
