"""Where a key or value of a sweep file is, for errors that name its line.

A YAML file is composed into PyYAML's node tree (``yaml.compose``), whose nodes carry the
exact line they start on, so an error names the line of that key *in its own section*: a key
written in both ``config`` and ``grid``, or a value that appears in two lists, is named where
the error is, not where its text happens to appear first. A key repeated in one mapping is
refused outright: PyYAML would silently keep the last one, and a run would then differ from
what its author read in the file.

TOML (which refuses repeated keys itself, and whose parser keeps no positions) is located by a
text search from the section's header, which is exact for the files ``interp sweep`` writes
about and approximate for unusual layouts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from interp.config import SECTIONS
from interp.errors import ConfigError

# The sweep file's sections whose keys are config fields (possibly nested by config section).
FIELD_SECTIONS = ("config", "grid")


def locator(path: Path, text: str) -> "Marks":
    """The locator for the file's format."""
    return TextMarks(path, text) if path.suffix == ".toml" else YamlMarks(path, text)


class Marks:
    """``error(key, message, value, section)``: a ConfigError prefixed ``FILE line N:``."""

    path: Path

    def line_of(self, key: str, value: Any = None, section: str | None = None) -> int | None:
        raise NotImplementedError

    def error(self, key: str, message: str, value: Any = None, section: str | None = None) -> ConfigError:
        line = self.line_of(key, value, section)
        at = f"{self.path} line {line}" if line else str(self.path)
        return ConfigError(f"{at}: {message}")


class YamlMarks(Marks):
    """Lines from the YAML node tree: ``(section, key) -> (key line, value node)``, where
    ``section`` is None for top-level keys and a field key is dotted (``model.n_layers``)
    whether the file nests it under ``model:`` or writes it flat."""

    def __init__(self, path: Path, text: str):
        import yaml  # a dependency; imported here so the library imports fast

        self.path = path
        self._loader = yaml.SafeLoader("")  # constructs single value nodes to compare with values
        self.entries: dict[tuple[str | None, str], tuple[int, Any]] = {}
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text.strip() else None
        if isinstance(root, yaml.MappingNode):
            self._add_mapping(root, None, "")

    def _add_mapping(self, node, section: str | None, prefix: str) -> None:
        import yaml

        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            entry = (section, key)
            if entry in self.entries:
                first = self.entries[entry][0]
                where = f" in '{section}'" if section else ""
                raise ConfigError(f"{self.path} line {key_node.start_mark.line + 1}: key '{key}'{where} "
                                  f"is given twice (lines {first} and {key_node.start_mark.line + 1}); "
                                  f"keep one")
            self.entries[entry] = (key_node.start_mark.line + 1, value_node)
            if section is None and key in FIELD_SECTIONS and isinstance(value_node, yaml.MappingNode):
                self._add_mapping(value_node, key, "")
            elif section and not prefix and key in SECTIONS and isinstance(value_node, yaml.MappingNode):
                self._add_mapping(value_node, section, f"{key}.")

    def line_of(self, key: str, value: Any = None, section: str | None = None) -> int | None:
        """The line of ``key`` in ``section``; with ``value``, the line of that value in the
        key's list (or of the key's own value), compared by type and value, not by text."""
        import yaml

        found = self.entries.get((section, key))
        if found is None:
            return None
        line, node = found
        if value is None:
            return line
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for item in items:
            if isinstance(item, yaml.ScalarNode) and _same(self._loader.construct_object(item), value):
                return item.start_mark.line + 1
        return line


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type: ``True`` is not ``1``, ``"2"`` is not ``2``."""
    return type(a) is type(b) and a == b


class TextMarks(Marks):
    """Lines by searching the text for the key, from the header of its section (``[grid]``)."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def line_of(self, key: str, value: Any = None, section: str | None = None) -> int | None:
        header = re.compile(rf"^\s*\[{re.escape(section)}(\.|\])") if section else None
        first = next((i for i, line in enumerate(self.lines) if header.search(line)), 0) if header else 0
        leaf = re.escape(key.rpartition(".")[2])
        pattern = re.compile(rf"""^\s*(?:-\s*)?["']?(?:[\w.]*\.)?{leaf}["']?\s*[:=]""")
        start = next((i for i in range(first, len(self.lines)) if pattern.search(self.lines[i])), None)
        if start is None or value is None:
            return None if start is None else start + 1
        needle = str(value).lower() if isinstance(value, bool) else str(value)
        for i in range(start, min(start + 20, len(self.lines))):
            if needle in self.lines[i]:
                return i + 1
        return start + 1
