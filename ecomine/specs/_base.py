"""The spec machinery every spec kind shares: strict models, YAML load/dump, errors, `${VAR}` expansion.

Sits under every other spec module (`specs.data`, `specs.train`, `specs.tune`,
`specs.ensemble`): a spec loads from YAML with errors that name the file, field
path and value, and dumps back to YAML unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["SpecError", "StrictModel", "expand_uri", "format_validation_error", "load_spec", "dump_spec", "apply_overrides",
           "check_name"]


class SpecError(ValueError):
    """A spec could not be loaded: the message names the file, field path and value."""


class StrictModel(BaseModel):
    """Base for every spec: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


_NAMES = {False: re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"), True: re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")}


def with_preset(data: Any, presets: dict[str, dict[str, Any]], *, into: str | None = None,
                extra: dict[str, Any] | None = None) -> Any:
    """A model spec's raw `data` with its named `preset`'s sizes filled in: fields the spec sets itself win.

    `into` names the sub-block the sizes belong to (recommend: `backbone`), `extra` fields that block needs
    with them. Unknown presets are left for the field's own Literal to refuse, naming the field.
    """
    if not isinstance(data, dict) or data.get("preset") not in presets:
        return data
    sizes = presets[data["preset"]]
    if into is None:
        return {**sizes, **data}
    return {**data, into: {**(extra or {}), **sizes, **(data.get(into) or {})}}


def check_name(kind: str, value: str, *, lower: bool = False) -> str:
    """A run / pipeline / campaign name that is safe as a folder and registry tag (ValueError naming it).
    `lower`: lower case and at most 64 characters (names that become registry names)."""
    if not _NAMES[lower].fullmatch(value):
        case = "lower-case letters" if lower else "letters"
        raise ValueError(f"{kind} name {value!r} must be {case}, digits, '.', '_' or '-'")
    return value


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_uri(uri: str) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset VAR without default is an error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise SpecError(f"{uri!r}: environment variable {m.group(1)} is not set")
            return m.group(2)
        return value

    return _ENV.sub(sub, uri)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `source: field.path: message (got value)`."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = repr(got) if not isinstance(got, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{source}: {path}: {e['msg']} (got {shown})")
    return "; ".join(lines)


M = TypeVar("M", bound=BaseModel)


def load_spec(path: str | Path, model: type[M], *, overrides: dict[str, Any] | None = None) -> M:
    """Load a YAML file into `model`; SpecError names the file, field path and value."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot read spec file: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{p}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if raw is None:
        raise SpecError(f"{p}: spec file is empty")
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: spec must be a mapping at the top level, got {type(raw).__name__}")
    if overrides:
        raw = apply_overrides(raw, overrides)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, str(p))) from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set optim.lr=0.002` pairs -> {"optim.lr": 0.002} (values parsed as YAML), what `apply_overrides` takes;
    SpecError naming a pair without `=`. The CLI's verbs and the benchmarks parse `--set` here alike."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SpecError(f"--set {pair!r}: expected dotted.path=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted paths in a nested dict (used by the CLI and Tune): `optim.lr`, and `members.0.campaign`
    (an integer part indexes a list that holds that element); a null parent becomes a mapping."""
    import copy

    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node: Any = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = _step(node, key, dotted)
        if isinstance(node, list):
            node[_index(node, leaf, dotted)] = value
        else:
            node[leaf] = value
    return out


def _index(node: list, key: str, dotted: str) -> int:
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise SpecError(f"override {dotted!r}: {key!r} is not an index of a list of {len(node)}")
    return int(key)


def _step(node: Any, key: str, dotted: str) -> Any:
    """One part of a dotted override path: into a mapping (a null or missing one made), or a list element."""
    if isinstance(node, list):
        nxt = node[_index(node, key, dotted)]
        if nxt is None:
            nxt = node[int(key)] = {}
    else:
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
    if not isinstance(nxt, (dict, list)):
        raise SpecError(f"override {dotted!r}: {key!r} is not a mapping or a list")
    return nxt


def dump_spec(spec: BaseModel) -> str:
    """YAML text that loads back into an equal spec."""
    # exclude_defaults keeps the YAML as short as what a user writes; loading
    # fills the same defaults back, so the round trip is exact.
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
