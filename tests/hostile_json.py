"""Hypothesis strategies for hostile JSON: any value with wrong types and huge numbers, and
JSON text damaged where parsers are weakest (duplicate keys, invalid UTF-8, deep nesting,
thousands of digits, non-standard constants, truncation). Shared by the tyd and enrollment
strategies (tests/tyd/wire_strategies.py, tests/enroll/request_strategies.py) and
bench/fuzz.py."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st


def sometimes(draw: st.DrawFn, *damage: str) -> str:
    """One of `damage` once in eight draws, else 'none': damage at every level at once
    would leave nothing for the codec to accept, and the verifier would never be reached."""
    if draw(st.integers(0, 7)):
        return "none"
    return draw(st.sampled_from(damage))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.text(st.characters(blacklist_categories=()), max_size=8),  # lone surrogates too
    st.integers(),
    st.sampled_from([-1, 0, 1 << 63, 1 << 64, -(1 << 63) - 1, 10**30]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def damage_fields(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    """Once in eight: one field of obj gets a wrong type, goes missing, or an extra field
    appears."""
    damage = sometimes(draw, "type", "missing", "extra")
    key = draw(st.sampled_from(sorted(obj)))
    if damage == "type":
        obj[key] = draw(json_values)
    elif damage == "missing":
        del obj[key]
    elif damage == "extra":
        obj["extra"] = draw(json_values)


@st.composite
def bytes_like(draw: st.DrawFn, real: bytes, always: bool = False, max_random: int = 400) -> bytes:
    """Binary structure as it is (unless `always`), or flipped, cut, extended, replaced."""
    damages = ("flip", "truncate", "trailing", "random")
    damage = draw(st.sampled_from(damages)) if always else sometimes(draw, *damages)
    if damage == "flip":
        at = draw(st.integers(0, len(real) - 1))
        return real[:at] + bytes([real[at] ^ draw(st.integers(1, 255))]) + real[at + 1 :]
    if damage == "truncate":
        return real[: draw(st.integers(1, len(real)))]
    if damage == "trailing":
        return real + draw(st.binary(min_size=1, max_size=8))
    if damage == "random":
        return draw(st.binary(min_size=1, max_size=max_random))
    return real


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def raw_json(draw: st.DrawFn, obj: Any) -> bytes:
    """obj as JSON text, sometimes damaged where a parser is weakest."""
    text = json.dumps(obj, separators=(",", ":")).encode()
    damage = sometimes(draw, "duplicate", "utf8", "deep", "digits", "truncate", "constant")
    if damage == "duplicate" and text.startswith(b'{"'):
        key = text[1 : text.index(b'"', 2) + 1]
        return b"{" + key + b":0," + text[1:]
    if damage == "utf8":
        at = draw(st.integers(0, len(text)))
        return (
            text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + text[at:]
        )
    if damage == "deep" and text.startswith(b"{"):
        return b'{"x":' + _deep(draw(st.integers(100, 6000))) + b"," + text[1:]
    if damage == "digits":
        return text.replace(b":", b":" + b"9" * draw(st.integers(10, 5000)) + b',"y":', 1)
    if damage == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if damage == "constant":
        return text.replace(b":", b':NaN,"z":', 1)
    return text
