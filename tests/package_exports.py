"""The ``__all__`` check of a package split into private modules (storage, registry)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["module_exports"]


def module_exports(package: ModuleType) -> set[str]:
    """Assert that each module of ``package`` lists in its ``__all__`` every public name it defines;
    return the union of those ``__all__``s."""
    modules = [importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    assert modules, f"{package.__name__} has no modules"
    exported: set[str] = set()
    for module in modules:
        defined = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        }
        assert defined <= set(module.__all__), module.__name__
        exported |= set(module.__all__)
    assert all(hasattr(package, name) for name in package.__all__)
    return exported
