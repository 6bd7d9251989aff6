"""The one reader of untrusted report JSON: every refusal one line naming the file, the field, what it holds
and what was expected."""

from __future__ import annotations

import pytest

from lenet_edge.errors import DataError
from lenet_edge.json_fields import FieldReader

READER = FieldReader("r.json", "a lenet-edge-test report")


@pytest.mark.parametrize("obj, kind, message", [
    ({}, int, "r.json: rows[0].runs is missing (expected int in a lenet-edge-test report)"),
    ({"runs": None}, int, "r.json: rows[0].runs is NoneType (expected int in a lenet-edge-test report)"),
    ({"runs": True}, int, "r.json: rows[0].runs is bool (expected int in a lenet-edge-test report)"),
    ({"runs": "4"}, (int, float), "r.json: rows[0].runs is str (expected number in a lenet-edge-test report)"),
    ({"runs": float("inf")}, (int, float), "r.json: rows[0].runs is inf (expected a finite number)"),
    ({"runs": "a\x1b]0;x\x07"}, str, r"r.json: rows[0].runs 'a\x1b]0;x\x07' holds control characters "
                                     "(expected printable text)"),
    ([1, 2], int, "r.json: rows[0] is list (expected dict in a lenet-edge-test report)"),
])
def test_a_field_that_is_not_what_is_expected_is_one_line_naming_it(obj, kind, message):
    with pytest.raises(DataError) as refused:
        READER.get(obj, "runs", kind, "rows[0].")
    assert str(refused.value) == message


def test_a_document_that_is_not_an_object_is_refused_as_a_whole():
    with pytest.raises(DataError, match=r"^r\.json: holds list \(expected dict in a lenet-edge-test report\)$"):
        READER.get([], "schema", str)


def test_what_is_expected_comes_back_as_its_type():
    obj = {"n": 3, "x": 2, "t": "ok", "xs": [1, 2.5], "ns": [1, 2], "ss": ["a"], "none": None}
    assert READER.get(obj, "n", int) == 3 and READER.get(obj, "t", str) == "ok"
    assert READER.number(obj, "x") == 2.0 and isinstance(READER.number(obj, "x"), float)
    assert READER.numbers(obj, "xs") == [1.0, 2.5] and READER.ints(obj, "ns") == (1, 2)
    assert READER.strings(obj, "ss") == ("a",)
    assert READER.get(obj, "none", int, optional=True) is None and READER.number(obj, "gone", optional=True) is None


@pytest.mark.parametrize("method, values, message", [
    ("numbers", [1.0, "x"], "r.json: s.xs holds a value that is not a finite number (expected numbers)"),
    ("numbers", [1.0, float("nan")], "r.json: s.xs holds a value that is not a finite number (expected numbers)"),
    ("ints", [1, True], "r.json: s.xs holds a value that is not an integer (expected integers)"),
    ("strings", ["a", 3], "r.json: s.xs holds a value that is not printable text (expected strings)"),
    ("strings", ["\x1b[2J"], "r.json: s.xs holds a value that is not printable text (expected strings)"),
])
def test_a_list_holding_a_value_of_another_kind_is_refused(method, values, message):
    with pytest.raises(DataError) as refused:
        getattr(READER, method)({"xs": values}, "xs", "s.")
    assert str(refused.value) == message
