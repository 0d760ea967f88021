"""What a method is when composed without overrides, and how a run differs from that.

A cell of a table is a method at its defaults, or with some settings changed. Votes,
thresholds and stage order are the settings the paper's tables vary, and `cope.results.runs`
keeps them as fields of a cell. Every other change to the method (`method.plan_max_tokens`,
a stage's plan type, temperature or executor, ...) is the run's *variant*. A run with a
variant is a cell of its own, labelled with it, and never fills the default row of a table.

Defaults come from conf/method/<name>.yaml, following its defaults list, over the schema's
(`cope.config.MethodConfig` and `StageConfig`).
"""

from __future__ import annotations

import dataclasses
import functools
from enum import Enum
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf

from cope.config import MethodConfig, StageConfig, TaskConfig
from cope.paths import CONFIG_DIR

CONF_DIR = CONFIG_DIR
METHOD_CONF_DIR = CONF_DIR / "method"

# settings a cell keeps as fields of its own (cope.results.runs.cell_of)
CELL_SETTINGS = ("order", "votes", "tau1", "tau2", "threshold_op")
# method keys that are not a variant: the cell settings, the name, and the stages (compared
# one field at a time below)
_NOT_VARIANT_METHOD_KEYS = frozenset(CELL_SETTINGS) | {"name", "stages"}
# a stage's scorer is a file path; where the trained scorer lies does not make another cell
_NOT_VARIANT_STAGE_KEYS = frozenset({"scorer"})


def _schema_defaults(schema) -> dict[str, Any]:
    """A config dataclass's field defaults (nested dataclasses as dicts; required fields left out)."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING and f.default is not MISSING:
            # closed sets are StrEnums: their plain value, as a run's config.yaml has it
            out[f.name] = str(f.default) if isinstance(f.default, Enum) else f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


@functools.cache
def method_yaml(method: str) -> dict[str, Any] | None:
    """conf/method/<method>.yaml merged over the methods of its defaults list, interpolations
    kept as written; None for a method not in conf/."""
    path = METHOD_CONF_DIR / f"{method}.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    parents = [method_yaml(p) for p in data.get("defaults", [])
               if isinstance(p, str) and p != "_self_"]
    own = {k: v for k, v in data.items() if k != "defaults"}
    merged = OmegaConf.merge(*[OmegaConf.create(p) for p in parents if p], OmegaConf.create(own))
    return OmegaConf.to_container(merged, resolve=False)


@functools.cache
def method_defaults(method: str) -> dict[str, Any]:
    """The cell settings (order, votes, tau1, tau2, threshold_op) a method has when composed
    without overrides. A method not in conf/ gets the schema's settings and no fixed order."""
    schema = _schema_defaults(MethodConfig)
    settings = {key: schema[key] for key in CELL_SETTINGS if key != "order"}
    data = method_yaml(method) or {}
    settings.update({key: data[key] for key in CELL_SETTINGS if key in data})
    if "order" in settings:
        settings["order"] = tuple(settings["order"])
    return settings


def default_settings(method: str) -> dict[str, Any]:
    """A method's default order (None: any), votes, (tau1, tau2) and threshold_op, in the
    form `cope.results.runs.cell_of` gives them."""
    d = method_defaults(method)
    return {"order": d.get("order"), "votes": int(d["votes"]),
            "taus": (float(d["tau1"]), float(d["tau2"])), "threshold_op": d["threshold_op"]}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def variant_of(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """How a run's method differs from its method's defaults, beyond the cell settings:
    sorted (key, value) pairs such as ("plan_max_tokens", 128) or ("s1.plan", "guideline").

    A stage default written as an interpolation (`${method.max_tokens}`, `${task.confidence}`)
    is resolved against the run's own method, task and pair, so `method.plan_max_tokens=128`
    is one difference, not one per stage. Keys a run's config lacks (records written before
    a field existed) count as defaults. A method not in conf/ has no variant."""
    method = config["method"]
    data = method_yaml(method["name"])
    if data is None:
        return ()
    diffs: list[tuple[str, Any]] = []
    default_method = {**_schema_defaults(MethodConfig),
                      **{k: v for k, v in data.items() if k != "stages"}}
    for key, default in default_method.items():
        if key in _NOT_VARIANT_METHOD_KEYS or key not in method:
            continue
        if not _same(method[key], default):
            diffs.append((key, method[key]))
    stage_schema = _schema_defaults(StageConfig)
    default_stages = {name: {**stage_schema, **(stage or {})}
                      for name, stage in (data.get("stages") or {}).items()}
    root = OmegaConf.create({
        "task": {**_schema_defaults(TaskConfig), **(config.get("task") or {})},
        "pair": config.get("pair") or {},
        "method": {**{k: v for k, v in method.items() if k != "stages"}, "stages": default_stages},
    })
    run_stages = method.get("stages") or {}
    for name, stage in default_stages.items():
        for key in stage:
            if key in _NOT_VARIANT_STAGE_KEYS or key not in (run_stages.get(name) or {}):
                continue
            default = OmegaConf.select(root, f"method.stages.{name}.{key}",
                                       throw_on_resolution_failure=False)
            value = run_stages[name][key]
            if default is None and stage[key] is not None:
                continue  # an interpolation the run's config cannot resolve: nothing to compare
            if not _same(value, default):
                diffs.append((f"{name}.{key}", value))
    return tuple(sorted(diffs))


def variant_label(variant: tuple[tuple[str, Any], ...]) -> str:
    """`plan_max_tokens=128 s1.plan=guideline`: the variant as overrides are written."""
    return " ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in variant)
