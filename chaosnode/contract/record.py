"""A record of the contract as JSON: a frozen dataclass of text, flags, numbers and lists of
text, written by chaos-build and read on the node. Reading is strict (every field, the right
kinds, nothing unknown), so a builder and a node that disagree fail at the first boot."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Self

KINDS: dict[object, tuple[type, ...]] = {str: (str,), bool: (bool,), int: (int,)}


class RecordError(ValueError):
    """The text is not this record."""


class JsonRecord:
    """Mixin for frozen dataclasses whose fields are str, bool, int or tuple[str, ...]."""

    def dumps(self, header: str) -> str:
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]
        return json.dumps({"_generated": header, **fields}, indent=2) + "\n"

    @classmethod
    def loads(cls, text: str | bytes) -> Self:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RecordError("not a JSON object")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(k for k in data if k not in names and not k.startswith("_"))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise RecordError(f"missing {missing}, unknown {unknown}")
        return cls(**{n: _checked(n, hints[n], data[n]) for n in names})


def _checked(name: str, hint: object, value: Any) -> object:
    if hint == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise RecordError(f"{name}: not a list of text")
    kinds = KINDS.get(hint, ())
    if isinstance(value, kinds) and not (hint is int and isinstance(value, bool)):
        return value
    raise RecordError(f"{name}: {value!r} is not {getattr(hint, '__name__', hint)}")
