"""PEP 562 lazy attributes for a package's public names (so that ``import sosc`` stays light)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_module_attributes(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``names`` map to the modules
    that define them; a name's module is imported the first time the name is read.

    >>> getattr_, dir_ = lazy_module_attributes("json", {"dumps": "json"})
    >>> getattr_("dumps")([1])
    '[1]'
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
