"""Search spaces: a YAML file (package data or a path) -> a validated, typed `SearchSpace`.

The YAML names are the RL config fields (`trainers.config.RLConfig`) plus the branch point `sft_checkpoint`,
and the `params.<name>` columns of the runs table. The space file is the one list of names: nothing else in
`sweep` repeats them. Conditionals (`when: {curriculum: true}`) are sampled only when the parent has that value;
otherwise they are inactive: `None` in a config, the empty string in MLflow params and the runs table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "AUTO",
    "BRANCH_POINT",
    "Parameter",
    "SEARCH_KINDS",
    "SearchKind",
    "SearchSpace",
    "load_space",
    "param_to_str",
    "space_path",
]

logger = logging.getLogger(__name__)

SearchKind = Literal["random", "tpe", "grid"]
SEARCH_KINDS: tuple[str, ...] = typing.get_args(SearchKind)
BRANCH_POINT = "sft_checkpoint"
"""The branch-point hyperparameter: SFT FLOPs spent before RL starts (0 = the instruct model)."""
AUTO = "auto"
"""`values: auto` (branch point only): the branch points the sweep's SFT stage produced."""

_TOP_KEYS = {"name", "description", "metric", "mode", "search", "parameters"}
_PARAM_KEYS = {"values", "when", "balanced"}
Value = bool | int | float | str
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Parameter:
    """One categorical hyperparameter of a space."""

    name: str
    """The RL config field / `params.<name>` column."""
    values: tuple[Value, ...]
    """Allowed values, in file order (empty while `auto` awaits the branch points)."""
    parent: str | None = None
    """Name of the parameter this one depends on (None: always active)."""
    parent_value: Value | None = None
    """The parent's value under which this parameter is active."""
    auto: bool = False
    """True for `values: auto` (branch point values filled in by the SFT stage)."""
    balanced: bool = False
    """`balanced: true`: random search draws it in shuffled blocks (every value once per `len(values)` trials
    where it is active, in a seeded random order), so each stratum of it gets the same number of runs, as the
    per-branch-point effects model needs; the other parameters stay independent uniform draws. TPE ignores it
    (with a warning); a grid has every value equally often anyway."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: ordered parameters (parents before children) and the objective."""

    name: str
    parameters: tuple[Parameter, ...]
    metric: str = "heldout_goal_success"
    mode: Literal["max", "min"] = "max"
    search: SearchKind = "random"
    description: str = ""

    def __post_init__(self) -> None:
        _check_structure(self)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r} in space {self.name!r}; it has {list(self.names)}")

    def is_active(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether `name` is active given the (parent) values in `params`."""
        p = self[name]
        if p.parent is None:
            return True
        return self.is_active(p.parent, params) and params.get(p.parent) == p.parent_value

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A full config: every name present, inactive conditionals set to None; validates the values.

        Raises:
            ValueError: unknown name, a value outside the space, or a missing active parameter.
        """
        unknown = sorted(set(params) - set(self.names))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {unknown} for space {self.name!r}: expected {list(self.names)}"
            )
        out: dict[str, Any] = {}
        for p in self.parameters:
            if not self.is_active(p.name, out):
                out[p.name] = None
                continue
            if p.name not in params or params[p.name] is None:
                raise ValueError(
                    f"hyperparameter {p.name!r} is active but has no value; give one of {list(p.values)}"
                )
            value = params[p.name]
            if not p.auto and not _in_values(value, p.values):
                raise ValueError(f"{p.name}={value!r} is not in the space; allowed: {list(p.values)}")
            out[p.name] = value
        return out

    def sample(self, rng: Any) -> dict[str, Any]:
        """One uniform random configuration (conditionals sampled only when active).

        Args:
            rng: a `numpy.random.Generator`.
        """
        self.require_concrete()
        out: dict[str, Any] = {}
        for p in self.parameters:
            out[p.name] = p.values[int(rng.integers(len(p.values)))] if self.is_active(p.name, out) else None
        return out

    def grid(self) -> list[dict[str, Any]]:
        """Every distinct configuration, conditionals expanded only under their parent's value."""
        self.require_concrete()
        configs: list[dict[str, Any]] = [{}]
        for p in self.parameters:
            nxt = []
            for c in configs:
                if self.is_active(p.name, c):
                    nxt.extend({**c, p.name: v} for v in p.values)
                else:
                    nxt.append({**c, p.name: None})
            configs = nxt
        return configs

    def grid_size(self) -> int:
        return len(self.grid())

    def with_values(self, name: str, values: Sequence[Value]) -> SearchSpace:
        """A copy where `name` takes `values` (used to fill `values: auto` with the built branch points)."""
        params = tuple(
            dataclasses.replace(p, values=tuple(values), auto=False) if p.name == name else p
            for p in self.parameters
        )
        return dataclasses.replace(self, parameters=params)

    def to_dict(self) -> dict[str, Any]:
        """The YAML schema as a plain dict (round-trips through `SearchSpace.from_dict`)."""
        parameters: dict[str, Any] = {}
        for p in self.parameters:
            entry: dict[str, Any] = {"values": AUTO if p.auto else list(p.values)}
            if p.parent is not None:
                entry["when"] = {p.parent: p.parent_value}
            if p.balanced:
                entry["balanced"] = True
            parameters[p.name] = entry
        return {
            "name": self.name,
            "description": self.description,
            "metric": self.metric,
            "mode": self.mode,
            "search": self.search,
            "parameters": parameters,
        }

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "<dict>", known: Mapping[str, Any] | None = None
    ):
        """Validate a parsed YAML mapping.

        Args:
            data: the parsed file.
            source: where it came from (for error messages).
            known: name -> type annotation of the allowed hyperparameters; default: the RL config fields
                (`trainers.config.RLConfig`) plus `sft_checkpoint`, or the names of the packaged paper.yaml
                when the trainers package is not installed.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source}: a space file is a mapping with a `parameters:` key, got {type(data).__name__}"
            )
        extra = sorted(set(data) - _TOP_KEYS)
        if extra:
            raise ValueError(f"{source}: unknown top-level key(s) {extra}; allowed: {sorted(_TOP_KEYS)}")
        raw = data.get("parameters")
        if not isinstance(raw, Mapping) or not raw:
            raise ValueError(f"{source}: `parameters:` must map hyperparameter names to {{values: [...]}}")
        known = dict(known) if known is not None else _known_names()
        params = [_parse_parameter(name, spec, source, known) for name, spec in raw.items()]
        search = data.get("search", "random")
        if search not in SEARCH_KINDS:
            raise ValueError(f"{source}: search={search!r}; use one of {list(SEARCH_KINDS)}")
        mode = data.get("mode", "max")
        if mode not in ("max", "min"):
            raise ValueError(f"{source}: mode={mode!r}; use 'max' or 'min'")
        return cls(
            name=str(data.get("name") or Path(source).stem),
            parameters=_topological(params, source),
            metric=str(data.get("metric", "heldout_goal_success")),
            mode=mode,
            search=search,
            description=str(data.get("description", "") or "").strip(),
        )

    def require_concrete(self) -> None:
        """Raise ValueError naming the parameters that still read `values: auto`."""
        pending = [p.name for p in self.parameters if p.auto]
        if pending:
            raise ValueError(
                f"{pending} still read `values: auto`: build the SFT branch points first (the driver does) "
                "or give explicit values"
            )


def param_to_str(value: Any) -> str:
    """A param as MLflow logs it: `str(value)`, booleans 'True'/'False', inactive (None) as ''."""
    return "" if value is None else str(value)


def space_path(name_or_path: str | Path) -> Path:
    """A packaged space by name (`paper`, `demo`) or a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    packaged = resources.files("sweep") / "spaces" / f"{p.stem if p.suffix else p.name}.yaml"
    if p.suffix in ("", ".yaml", ".yml") and packaged.is_file():
        return Path(str(packaged))
    names = sorted(
        f.name[:-5] for f in (resources.files("sweep") / "spaces").iterdir() if f.name.endswith(".yaml")
    )
    raise FileNotFoundError(
        f"no space file {str(name_or_path)!r}: give a YAML path or a packaged name {names}"
    )


def load_space(name_or_path: str | Path, *, known: Mapping[str, Any] | None = None) -> SearchSpace:
    """Read and validate a space YAML (see the module docstring and sweep/spaces/paper.yaml)."""
    path = space_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    return SearchSpace.from_dict(data, source=str(path), known=known)


# --------------------------------------------------------------------------- helpers


def _in_values(value: Any, values: Sequence[Any]) -> bool:
    # bool is an int in Python: True must not match 1, nor 1.0 match True
    return any(isinstance(value, bool) == isinstance(v, bool) and value == v for v in values)


def _known_names() -> dict[str, Any]:
    """Allowed names -> annotation (None when unknown): the RL config fields, else the packaged paper.yaml."""
    try:
        from trainers.config import RLConfig  # noqa: PLC0415 (optional sibling package)
    except ImportError:
        RLConfig = None  # noqa: N806
    if RLConfig is not None and dataclasses.is_dataclass(RLConfig):
        hints = typing.get_type_hints(RLConfig)
        known = {f.name: hints.get(f.name) for f in dataclasses.fields(RLConfig)}
        known.setdefault(BRANCH_POINT, float)
        return known
    logger.debug("trainers.config.RLConfig not importable: checking names against the packaged paper.yaml")
    paper = yaml.safe_load((resources.files("sweep") / "spaces" / "paper.yaml").read_text())
    return {name: None for name in paper["parameters"]}


def _parse_parameter(name: str, spec: Any, source: str, known: Mapping[str, Any]) -> Parameter:
    if name not in known:
        raise ValueError(
            f"{source}: unknown hyperparameter {name!r}; the names are the RL config fields: {sorted(known)}"
        )
    if not isinstance(spec, Mapping):
        raise ValueError(f"{source}: {name}: expected a mapping like {{values: [...]}}, got {spec!r}")
    extra = sorted(set(spec) - _PARAM_KEYS)
    if extra:
        raise ValueError(f"{source}: {name}: unknown key(s) {extra}; allowed: {sorted(_PARAM_KEYS)}")
    values = spec.get("values")
    auto = values == AUTO
    if auto and name != BRANCH_POINT:
        raise ValueError(f"{source}: {name}: `values: auto` is only for {BRANCH_POINT}; list the values")
    if not auto:
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: {name}: `values` must be a non-empty list, got {values!r}")
        values = [_coerce(name, v, known.get(name), source) for v in values]
        if len({(type(v) is bool, v) for v in values}) != len(values):
            raise ValueError(f"{source}: {name}: duplicate values in {values}")
    when = spec.get("when")
    parent = parent_value = None
    if when is not None:
        if not isinstance(when, Mapping) or len(when) != 1:
            raise ValueError(
                f"{source}: {name}: `when` must name exactly one parent, e.g. {{curriculum: true}}"
            )
        ((parent, parent_value),) = when.items()
    balanced = spec.get("balanced", False)
    if not isinstance(balanced, bool):
        raise ValueError(f"{source}: {name}: `balanced` must be true or false, got {balanced!r}")
    return Parameter(name, () if auto else tuple(values), parent, parent_value, auto, balanced)


def _coerce(name: str, value: Any, annotation: Any, source: str) -> Value:
    """Check one value against the config field's type (YAML reads 1e-6 as a float, 5 as an int)."""
    if isinstance(value, (list, dict)) or value is None:
        raise ValueError(f"{source}: {name}: value {value!r} must be a scalar (bool, number or string)")
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 (PyYAML) reads 2.5e18 as a string; YAML 1.2 and users mean a number
    if annotation is None:
        return value
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {name}={value!r}: this field is a bool; write true or false")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: {name}={value!r}: this field is an integer")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: {name}={value!r}: this field is a number")
        return float(value) if isinstance(value, float) else value
    elif origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"{source}: {name}={value!r}: allowed values are {list(choices)}")
    return value


def _topological(params: list[Parameter], source: str) -> tuple[Parameter, ...]:
    by_name = {p.name: p for p in params}
    for p in params:
        if p.parent is None:
            continue
        if p.parent not in by_name:
            raise ValueError(
                f"{source}: {p.name} is conditional on {p.parent!r}, which is not in the space; "
                f"add {p.parent} or drop `when`"
            )
        parent = by_name[p.parent]
        if not parent.auto and not _in_values(p.parent_value, parent.values):
            raise ValueError(
                f"{source}: {p.name}: when {{{p.parent}: {p.parent_value!r}}} never holds; "
                f"{p.parent} takes {list(parent.values)}"
            )
    ordered: list[Parameter] = []
    placed: set[str] = set()
    pending = list(params)  # file order is kept wherever parents already come first
    while pending:
        ready = next((p for p in pending if p.parent is None or p.parent in placed), None)
        if ready is None:
            raise ValueError(f"{source}: conditional cycle among {[p.name for p in pending]}")
        ordered.append(ready)
        placed.add(ready.name)
        pending.remove(ready)
    return tuple(ordered)


def _check_structure(space: SearchSpace) -> None:
    names = [p.name for p in space.parameters]
    if len(set(names)) != len(names):
        raise ValueError(f"space {space.name!r}: duplicate parameter names {names}")
    if space.search not in SEARCH_KINDS:
        raise ValueError(f"space {space.name!r}: search={space.search!r}; use one of {list(SEARCH_KINDS)}")
