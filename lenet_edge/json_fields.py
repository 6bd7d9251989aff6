"""Typed fields of JSON read from a file another machine, a browser or an older release may have written
(bench, profile and compile reports): the one place where a refusal is worded. Each is one DataError line
naming the file, the field's path, what it holds and what was expected:

    r.json: rows[0].threads is str (expected int in a lenet-edge-bench report)

Standard library only: the device side reads reports too.
"""

from __future__ import annotations

import math

from .errors import DataError
from .text import has_non_printing

MISSING = object()
_NAMES = {int: "int", float: "number", str: "str", list: "list", dict: "dict", bool: "bool"}


class FieldReader:
    """Field access on untrusted JSON from `source` (a file name), a report of the kind `what` names
    ("a lenet-edge-bench report"). `where` is the path to the object a field is read from, as a prefix
    ("rows[0].spread.")."""

    def __init__(self, source: str, what: str):
        self.source, self.what = source, what

    def refuse(self, where: str, message: str) -> DataError:
        """An error about the field or object at `where` (no trailing dot), in the reader's words."""
        field = f"{where.removesuffix('.')} " if where else ""
        return DataError(f"{self.source}: {field}{message}")

    def get(self, obj: object, key: str, kind: type | tuple[type, ...], where: str = "", optional: bool = False):
        """obj[key], refused unless it is of `kind` (never a bool for a number); None for an absent or null
        field with `optional`. Strings are printed: one with control characters is refused."""
        if not isinstance(obj, dict):  # the object the field should be in is something else
            found = f"{'is' if where else 'holds'} {type(obj).__name__}"
            raise self.refuse(where, f"{found} (expected dict in {self.what})")
        value = obj.get(key, MISSING)
        if optional and (value is None or value is MISSING):
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is MISSING or not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            found = "missing" if value is MISSING else type(value).__name__
            names = " or ".join(_NAMES.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))
            raise self.refuse(where + key, f"is {found} (expected {names} in {self.what})")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.refuse(where + key, f"is {value!r} (expected a finite number)")
        if isinstance(value, str) and has_non_printing(value):  # reports are printed: no escape sequences
            raise self.refuse(where + key, f"{value[:40]!r} holds control characters (expected printable text)")
        return value

    def number(self, obj: object, key: str, where: str = "", optional: bool = False) -> float | None:
        """A finite int or float field, as a float."""
        value = self.get(obj, key, (int, float), where, optional)
        return None if value is None else float(value)

    def numbers(self, obj: object, key: str, where: str = "") -> list[float]:
        """A list of finite numbers, as floats."""
        values = self.get(obj, key, list, where)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise self.refuse(where + key, "holds a value that is not a finite number (expected numbers)")
        return [float(v) for v in values]

    def ints(self, obj: object, key: str, where: str = "") -> tuple[int, ...]:
        values = self.get(obj, key, list, where)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.refuse(where + key, "holds a value that is not an integer (expected integers)")
        return tuple(values)

    def strings(self, obj: object, key: str, where: str = "") -> tuple[str, ...]:
        values = self.get(obj, key, list, where)
        if not all(isinstance(v, str) and not has_non_printing(v) for v in values):
            raise self.refuse(where + key, "holds a value that is not printable text (expected strings)")
        return tuple(values)


def json_lists(value):
    """A record's asdict() with its tuples as JSON lists, all the way down: what to_json returns equals what
    json.loads gives back."""
    if isinstance(value, dict):
        return {k: json_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_lists(v) for v in value]
    return value
