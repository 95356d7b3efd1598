"""Where each key of a TOML text is defined: a line number per key path, for messages.

tomllib gives no positions, so the text is scanned once more for where each key is defined.
It runs only on text tomllib accepted, so it can trust the syntax; it only has to skip values
(strings that may hold "[x]" or "a = b", arrays over several lines) correctly.
"""

from __future__ import annotations

import re
import tomllib

KeyPath = tuple[str | int, ...]
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
SCALAR_END = frozenset(",]}#\n\r")


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line where each key path of a valid TOML text is defined (tables: their header)."""
    scanner = _Scanner(text)
    try:
        return scanner.scan()
    except (ValueError, IndexError, tomllib.TOMLDecodeError):
        # Only text tomllib accepted gets here; should the scan still stumble, the keys found so
        # far keep their lines and the rest fall back to their table's (or line 1).
        return scanner.lines


class _Scanner:
    """One pass over the text, noting the line of each key path as it is defined."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self._skip(newlines=True)
            if self.position >= len(self.text):
                return self.lines
            line = self.line
            if self.text.startswith("[[", self.position):
                self._advance(2)
                path = self._in_arrays(self._key())
                index = self.array_tables.get(path, 0)
                self.array_tables[path] = index + 1
                table = (*path, index)
                self._define(table, line)
                self._expect("]]")
            elif self.text.startswith("[", self.position):
                self._advance(1)
                table = self._in_arrays(self._key())
                self._define(table, line)
                self._expect("]")
            else:
                self._key_value(table)

    def _in_arrays(self, path: KeyPath) -> KeyPath:
        """A header's path with the index of the latest ``[[table]]`` after each parent that
        is an array of tables: ``[fruit.variety]`` after ``[[fruit]]`` is in fruit's last."""
        resolved: list[str | int] = []
        for part in path[:-1]:
            resolved.append(part)
            count = self.array_tables.get(tuple(resolved))
            if count is not None:
                resolved.append(count - 1)
        return (*resolved, *path[-1:])

    def _define(self, path: KeyPath, line: int) -> None:
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], line)
        self.lines[path] = line

    def _key_value(self, table: KeyPath) -> None:
        line = self.line
        path = (*table, *self._key())
        self._define(path, line)
        self._expect("=")
        self._value(path)

    def _key(self) -> KeyPath:
        parts: list[str | int] = []
        while True:
            self._skip()
            character = self.text[self.position]
            if character in "\"'":
                start = self.position
                self._string()
                # tomllib decodes the quoted key exactly as it did when parsing.
                parts.append(tomllib.loads(f"k = {self.text[start : self.position]}")["k"])
            else:
                match = BARE_KEY.match(self.text, self.position)
                if match is None:
                    raise ValueError(f"no key at offset {self.position}")
                parts.append(match.group(0))
                self._advance(len(match.group(0)))
            self._skip()
            if not self.text.startswith(".", self.position):
                return tuple(parts)
            self._advance(1)

    def _value(self, path: KeyPath) -> None:
        self._skip()
        character = self.text[self.position]
        if character in "\"'":
            self._string()
        elif character == "[":
            self._advance(1)
            index = 0
            while True:
                self._skip(newlines=True)
                if self.text.startswith("]", self.position):
                    self._advance(1)
                    return
                self.lines.setdefault((*path, index), self.line)
                self._value((*path, index))
                index += 1
                self._skip(newlines=True)
                if self.text.startswith(",", self.position):
                    self._advance(1)
        elif character == "{":
            self._advance(1)
            while True:
                self._skip(newlines=True)
                if self.text.startswith("}", self.position):
                    self._advance(1)
                    return
                self._key_value(path)
                self._skip(newlines=True)
                if self.text.startswith(",", self.position):
                    self._advance(1)
        else:
            start = self.position
            while self.position < len(self.text) and self.text[self.position] not in SCALAR_END:
                self.position += 1
            if self.position == start:
                raise ValueError(f"no value at offset {start}")

    def _string(self) -> None:
        quote = self.text[self.position]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.position) else quote
        self._advance(len(delimiter))
        while not self.text.startswith(delimiter, self.position):
            step = 2 if quote == '"' and self.text[self.position] == "\\" else 1
            self._advance(step)
        self._advance(len(delimiter))
        # A multi-line string may end with up to two more quotes that belong to its content.
        for _ in range(2 if len(delimiter) == 3 else 0):
            if self.text.startswith(quote, self.position):
                self._advance(1)

    def _skip(self, *, newlines: bool = False) -> None:
        """Spaces and tabs, comments, and with ``newlines`` line breaks too."""
        while self.position < len(self.text):
            character = self.text[self.position]
            if character in " \t" or (newlines and character in "\r\n"):
                self._advance(1)
            elif character == "#":
                end = self.text.find("\n", self.position)
                self.position = len(self.text) if end < 0 else end
            else:
                return

    def _expect(self, token: str) -> None:
        self._skip()
        if not self.text.startswith(token, self.position):
            raise ValueError(f"expected {token!r} at offset {self.position}")
        self._advance(len(token))

    def _advance(self, count: int) -> None:
        if self.position + count > len(self.text):
            raise ValueError("unexpected end of text")
        self.line += self.text.count("\n", self.position, self.position + count)
        self.position += count
