"""Text from files that ends up on a terminal (class labels, a report's CPU name): control, format
and other non-printing characters would reach the terminal raw (ESC sequences set its title,
clear it, recolour output; bidirectional overrides reorder what is shown). Pure Python."""

import unicodedata

_NON_PRINTING = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def has_non_printing(text: str) -> bool:
    """Whether `text` holds a control, format, surrogate, private-use or unassigned character, or a line break."""
    return any(unicodedata.category(c) in _NON_PRINTING for c in text)
