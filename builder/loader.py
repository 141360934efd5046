"""Load YAML keeping the line of every key and item, so errors can say where."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

Path_ = tuple[str | int, ...]


@dataclass
class Document:
    """Plain YAML data plus the line (1-based) of each path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    # source text of each scalar: YAML 1.1 reads an unquoted MAC such as 52:54:00:12:34:56
    # as a base-60 integer, so text fields need what the admin typed.
    texts: dict[Path_, str] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of `path`, or of its closest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def load_text(text: str, file: str) -> Document:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(file, line, "", f"not valid YAML: {exc.problem}; check "
                                   "indentation and quoting near this line")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    doc = Document(file, None)
    if root is None:
        return doc
    constructor = yaml.SafeLoader("")
    problems: list[Problem] = []
    doc.data = _walk(root, (), doc, constructor, problems)
    if problems:
        raise ConfigError(problems)
    return doc


def load_file(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), None, "", "file not found; pass the cluster "
                                   "file with -c PATH")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None
    return load_text(text, str(path))


def _walk(node: yaml.Node, path: Path_, doc: Document, constructor: yaml.SafeLoader,
          problems: list[Problem]) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            if not isinstance(key, str):
                problems.append(Problem(doc.file, key_node.start_mark.line + 1,
                                        _dotted(path), f"key {key!r} is not a name"))
                continue
            if key in out:
                problems.append(Problem(doc.file, key_node.start_mark.line + 1,
                                        _dotted((*path, key)),
                                        "given twice; keep one of them"))
                continue
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*path, key), doc, constructor, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), doc, constructor, problems)
                for i, item in enumerate(node.value)]
    doc.texts[path] = node.value
    return constructor.construct_object(node)


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


dotted = _dotted
