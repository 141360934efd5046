"""Load YAML keeping the line of every key and item, so errors can say where.

Every YAML input of chaos-build (chaos.yaml, smoke scenarios, the TPM registry) comes through
here, so the bounds live here too: files larger than MAX_FILE_BYTES are refused before they are
read in full, and anchors/aliases are refused while composing, before anything is constructed
(nested aliases, the "billion laughs", expand a few lines into billions of values).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

Path_ = tuple[str | int, ...]

# chaos.yaml for a lab of a thousand nodes is ~100 KiB; ten times that is no cluster file.
MAX_FILE_BYTES = 1024 * 1024


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


class _Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases at the first event that has one, and keeps
    the path of the node being composed so the error can name the field."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.path: list[str | int] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        segment: list[str | int] = []
        if isinstance(index, int):
            segment = [index]
        elif isinstance(index, yaml.ScalarNode):
            segment = [str(index.value)]
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            what = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise _Refused(
                Problem(
                    self.file,
                    event.start_mark.line + 1,
                    _dotted((*self.path, *segment)),
                    f"YAML {what}{event.anchor} is not allowed (aliases can expand a few lines "
                    "into billions of values); write the value out in full",
                )
            )
        self.path.extend(segment)
        try:
            return super().compose_node(parent, index)
        finally:
            del self.path[len(self.path) - len(segment) :]


def _too_big(file: str, size: int) -> ConfigError:
    return ConfigError(
        [
            Problem(
                file,
                None,
                "",
                f"{size} bytes is more than the "
                f"{MAX_FILE_BYTES >> 20} MiB a chaos-build YAML file may have; "
                "is this the right file?",
            )
        ]
    )


def load_text(text: str, file: str) -> Document:
    size = len(text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        raise _too_big(file, size)
    loader = _BoundedLoader(text, file)
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        raise ConfigError([exc.problem]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"not valid YAML: {exc.problem}; check indentation and quoting near this line",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    doc = Document(file, None)
    if root is None:
        return doc
    constructor = yaml.SafeLoader("")
    problems: list[Problem] = []
    doc.data = _walk(root, (), doc, constructor, problems)
    if problems:
        raise ConfigError(problems)
    return doc


def read_bounded(path: Path) -> str:
    """The text of a YAML input file, refused unread past MAX_FILE_BYTES (reading stops there,
    so neither a huge file nor a device such as /dev/zero is read in full)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                size = max(os.fstat(f.fileno()).st_size, len(data))
                raise _too_big(str(path), size)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(str(path), None, "", "file not found; pass the cluster file with -c PATH")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None


def load_file(path: Path) -> Document:
    return load_text(read_bounded(path), str(path))


def _walk(
    node: yaml.Node,
    path: Path_,
    doc: Document,
    constructor: yaml.SafeLoader,
    problems: list[Problem],
) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        _dotted(path),
                        f"key {key!r} is not a name",
                    )
                )
                continue
            if key in out:
                problems.append(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        _dotted((*path, key)),
                        "given twice; keep one of them",
                    )
                )
                continue
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*path, key), doc, constructor, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _walk(item, (*path, i), doc, constructor, problems) for i, item in enumerate(node.value)
        ]
    doc.texts[path] = node.value
    try:
        return constructor.construct_object(node)
    except ValueError:  # a scalar YAML resolves but cannot build, e.g. the date 2026-02-30:
        return node.value  # the field's parser judges the text and says what is wrong


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


dotted = _dotted
