"""Known data sets: adapters and mapping YAML shipped with the package.

Sits beside `ecomine.data`: a preset name (`online-retail`) resolves to a DataSpec
file inside the package, so users and tests need not know where it lies.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DATA_PRESETS", "resolve_data_spec_path"]

DATA_PRESETS: dict[str, str] = {
    "online-retail": "online_retail.yaml",
    "amazon-toys": "amazon_toys.yaml",
    "amazon-sports": "amazon_sports.yaml",
}


def resolve_data_spec_path(name_or_path: str) -> Path:
    """A preset name -> the packaged YAML; anything else is taken as a path."""
    if name_or_path in DATA_PRESETS:
        return Path(str(resources.files(__package__).joinpath(DATA_PRESETS[name_or_path])))
    return Path(name_or_path)
