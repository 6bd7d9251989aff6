"""Writing C: the fixed parts from the template files in c/ (package data), the generated parts through a
writer that keeps blocks and indentation, so no kernel formats its own braces or spaces."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from string import Template

INDENT = "  "


def initialiser(*values: str) -> str:
    """A C initialiser list on one line: {a, b}."""
    return "{" + ", ".join(values) + "}"


def inline_block(opener: str, *statements: str) -> str:
    """A block of short statements on one line: if (x) { a; b; }."""
    return opener + " { " + " ".join(statements) + " }"


def template(file_name: str, **fields: object) -> str:
    """c/`file_name` with its ${field}s filled (C never uses `$`, so the C reads as C)."""
    text = resources.files(__package__).joinpath("c", file_name).read_text(encoding="utf-8")
    return Template(text).substitute({key: str(value) for key, value in fields.items()})


class CWriter:
    """Lines of C at the current depth: `block` opens `{` ... `}`, `nested` indents the one statement of
    a brace-less `for`, `function` puts a definition's braces on lines of their own."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0

    def line(self, text: str = "") -> None:
        self._lines.append(INDENT * self._depth + text if text else "")

    def directive(self, text: str) -> None:
        """A preprocessor line, at the start of the line whatever the depth."""
        self._lines.append(text)

    def lines(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith("#"):  # a preprocessor line stays at the start of its line
                self.directive(line)
            else:
                self.line(line)

    @contextlib.contextmanager
    def indented(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @contextlib.contextmanager
    def block(self, opener: str) -> Iterator[None]:
        self.line(opener + " {" if opener else "{")
        with self.indented():
            yield
        self.line("}")

    @contextlib.contextmanager
    def nested(self, opener: str) -> Iterator[None]:
        self.line(opener)
        with self.indented():
            yield

    @contextlib.contextmanager
    def function(self, signature: str) -> Iterator[None]:
        self.line(signature)
        self.line("{")
        with self.indented():
            yield
        self.line("}")

    def text(self) -> str:
        return "\n".join(self._lines)
