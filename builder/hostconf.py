"""The serve host's own configuration files, rendered from templates/ (dumb Jinja2, the same
settings as the nodes' templates): the values are computed in Python by the module that owns
the file (builder/nginx.py), the template only substitutes and loops."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from .errors import RenderError
from .render import environment
from .resources import data_dir


@cache
def host_environment() -> jinja2.Environment:
    return environment(data_dir("templates"))


def render_host(name: str, values: Mapping[str, Any]) -> str:
    """Pure: templates/NAME with these values."""
    try:
        return host_environment().get_template(name).render(values)
    except jinja2.TemplateError as exc:
        raise RenderError(f"templates/{name}: {exc}") from None
