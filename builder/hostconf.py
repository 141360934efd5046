"""The serve host's own configuration files, rendered from templates/ (dumb Jinja2, the same
settings as the nodes' templates): the values are computed in Python by the module that owns
the file, as a frozen view (builder/nginx.py: nginx; builder/serve.py: dnsmasq's config and
hosts file; builder/image/pxe.py: the iPXE scripts, pxelinux and GRUB; builder/image/iso.py:
isolinux and the ISO's GRUB), the template only
substitutes and loops."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, Protocol

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


class View(Protocol):
    """A frozen dataclass whose fields are a template's values."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


def render_view(name: str, view: View) -> str:
    """Pure: templates/NAME with the fields of `view` (a frozen dataclass) as its values."""
    return render_host(name, {f.name: getattr(view, f.name) for f in dataclasses.fields(view)})
