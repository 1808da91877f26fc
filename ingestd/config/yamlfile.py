"""YAML loading that remembers where every value came from.

PyYAML's composer keeps a start mark on each node; we turn the node tree into
plain Python values and, beside them, a map from key path to line number so
that validation errors can name the line an admin has to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingestd.errors import Problem, YamlSyntaxError

KeyPath = tuple[str | int, ...]


@dataclass
class LocatedDocument:
    """A YAML document as plain values plus the line of every key path."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # Values read so far (bounded by MAX_NODES).
    nodes: int = 0

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: KeyPath, reason: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), reason)


def format_path(path: KeyPath) -> str:
    """``("mailboxes", 0, "name")`` → ``mailboxes[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# A configuration or rule file has hundreds of values; this many is an attack or a mistake.
MAX_NODES = 100_000


def load_located(path: Path) -> LocatedDocument:
    """Read ``path`` and return its values with line numbers.

    Raises ``OSError`` when the file cannot be read and ``YamlSyntaxError``
    when it is not valid YAML.
    """
    text = path.read_text(encoding="utf-8")
    return parse_located(text, str(path))


def parse_located(text: str, filename: str) -> LocatedDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = f"invalid YAML: {exc.problem or exc}"
        raise YamlSyntaxError(Problem(filename, line, "", reason)) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(filename, None, "", f"invalid YAML: {exc}")) from exc
    doc = LocatedDocument(file=filename, data=None)
    if node is None:
        doc.data = {}
        return doc
    constructor = yaml.SafeLoader("")
    doc.data = _convert(node, (), doc, constructor)
    return doc


def _convert(node: yaml.Node, path: KeyPath, doc: LocatedDocument, ctor: yaml.SafeLoader) -> Any:
    doc.nodes += 1
    if doc.nodes > MAX_NODES:
        # Aliases can make a few hundred bytes expand to millions of values.
        raise YamlSyntaxError(Problem(doc.file, node.start_mark.line + 1, format_path(path),
                                      f"more than {MAX_NODES} values (aliases expanding?)"))
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                key = str(key)
            child = (*path, key)
            doc.lines[child] = key_node.start_mark.line + 1
            if key in result:
                raise YamlSyntaxError(
                    Problem(doc.file, key_node.start_mark.line + 1, format_path(child),
                            "key appears twice in the same mapping")
                )
            result[key] = _convert(value_node, child, doc, ctor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)
