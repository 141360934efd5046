"""How a chaos.yaml setting is declared: its default, help text, example and limits, once.

The core model (builder/model.py) and every feature's own model section
(builder/<feature>/model.py, named by its Feature) declare their settings with these; the
loader, `chaos-build reference` and `show` read the declarations. Standard library only, so a
feature's model imports nothing of the core.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(default: Any, help: str, example: Any = None, **limits: Any) -> Any:
    """Declare one chaos.yaml setting: default, help text, example, limits (min/max)."""
    meta = {"help": help, "example": default if example is None else example, **limits}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return field(default=default, metadata=meta)


def required(help: str, example: Any, **limits: Any) -> Any:
    """Declare a setting without a default: the admin must give it."""
    return field(metadata={"help": help, "example": example, "required": True, **limits})
