"""What a dataset cell is, and the caps every dataset format is read under.

A cell is text, or a list of texts where the file holds a list of strings and numbers (JSON, Arrow, Parquet;
numbers become their JSON text, 10 -> "10"). Every reader (text_files.py, hf_files.py) turns values into cells
through one `Cells` per file, so the row cap, the cell cap and their messages are the same for every format.
"""
from __future__ import annotations

import json

from prompt_lab.errors import PromptLabError
from prompt_lab.settings import get_settings

JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null",
              dict: "object"}


class DatasetError(PromptLabError):
    """A dataset file or column mapping that cannot be used; the message names the file, line and column."""


def json_text(value) -> str:
    """A value's JSON spelling (true, 1.5, nested objects) rather than Python's, so the text matches the file;
    values JSON has no type for (an Arrow timestamp, bytes) read as their str()."""
    return json.dumps(value, ensure_ascii=False, default=str)


def cell_text(value) -> str:
    """A value that is not a list, as the text of a cell."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""  # null reads as an empty value, which to_items reports if the column is used
    return json_text(value)


class Cells:
    """How one file's values become cells under the caps. A list of anything but strings and numbers is kept as
    its JSON text and remembered in `refused`, for to_items to refuse it as answers or choices (a column nobody
    maps may hold anything). `unit` names what a row's number counts: line, item (of a JSON array) or row."""

    def __init__(self, name: str, unit: str):
        settings = get_settings()
        self.name, self.unit = name, unit
        self.max_rows, self.max_chars = settings.max_rows, settings.max_cell_chars
        self.refused: dict[tuple[int, str], str] = {}  # (row's number, column) -> what is wrong with its list

    def check_rows(self, count: int) -> None:
        """Refuse a file once it holds more than the row cap."""
        if count > self.max_rows:
            raise DatasetError(f"{self.name}: more than {self.max_rows} rows (the limit is {self.max_rows}; "
                               "PROMPT_LAB_MAX_ROWS raises it)")

    def text(self, text: str, line: int, column: str) -> str:
        """A text cell, checked against the cell cap."""
        if len(text) > self.max_chars:
            raise DatasetError(f"{self.name}, {self.unit} {line}: column '{column}' is longer than {self.max_chars} "
                               "characters")
        return text

    def value(self, value, line: int, column: str) -> str | list[str]:
        """A JSON (or Arrow) value as a cell; a list is measured by its JSON text against the cell cap."""
        if not isinstance(value, list):
            return self.text(cell_text(value), line, column)
        self.text(json_text(value), line, column)
        for i, element in enumerate(value, 1):
            if not isinstance(element, (str, int, float)) or isinstance(element, bool):
                kind = JSON_TYPES.get(type(element), type(element).__name__)
                self.refused[(line, column)] = f"element {i} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
                return json_text(value)
        return [e if isinstance(e, str) else json_text(e) for e in value]
