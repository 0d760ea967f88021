"""A calibrated configuration as an experiment file: an ordinary cope run of it.

The file is the pool's own recorded config with the configuration's structure and
thresholds set, early exit back on and the test problems selected, so the run on the test
split is the configuration the search evaluated and nothing else:

    cope hydra.searchpath=[file://DIR] experiment=calibrated_cope run_dir=...
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from cope.calibration.pools import Pool
from cope.calibration.search import Configuration
from cope.paths import CONFIG_DIR
from cope.results.method_defaults import method_yaml

# the groups conf/config.yaml composes, named in the recorded config by <group>.name
GROUPS = ("task", "method", "pair", "backend", "tracker")
NOT_WRITTEN = ("run_dir", "resume")  # each run of the experiment chooses its own


def method_settings(pool: Pool, configuration: Configuration) -> dict[str, Any]:
    """The method section of the pool's config with the configuration applied: stage fields
    and the method settings they interpolate in conf/ (votes, tau1, ...) alike."""
    method = copy.deepcopy(pool.config["method"])
    written = ((method_yaml(pool.method) or {}).get("stages")) or {}
    structure = configuration.structure
    pool.apply_structure(method, structure)
    method["threshold_op"] = configuration.threshold_op
    method["early_exit"] = True
    for name, tau in zip(structure.order, configuration.thresholds):
        if tau is None:
            continue
        method["stages"][name]["threshold"] = tau
        knob = str((written.get(name) or {}).get("threshold", ""))
        if knob.startswith("${method.") and knob.endswith("}"):
            method[knob[len("${method."):-1]] = tau
    return method


def experiment(pool: Pool, configuration: Configuration, test_task: dict[str, Any],
               header: str) -> str:
    config = copy.deepcopy(pool.config)
    for key in NOT_WRITTEN:
        config.pop(key, None)
    config["method"] = method_settings(pool, configuration)
    config["task"] = {**config["task"], **test_task}
    defaults = [{f"override /{group}": config[group]["name"]} for group in GROUPS
                if group in config and (CONFIG_DIR / group / f"{config[group]['name']}.yaml")
                .is_file()]
    body = yaml.safe_dump({"defaults": defaults, **config}, sort_keys=False)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return f"# @package _global_\n{comment}{body}"
