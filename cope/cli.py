"""The `cope` command: a Hydra app over conf/ around `cope.runner.run`."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from cope import paths
from cope.config import refuse_renamed, register_configs
from cope.errors import ConfigError, CopeError
from cope.runner import run, summary

register_configs()
log = logging.getLogger("cope")

CONFIG_DIR = str(paths.CONFIG_DIR)


def main() -> None:
    if sys.argv[1:2] == ["view"]:  # `cope view RUNS_DIR`: no Hydra app, no run
        from cope.view.cli import main as view

        sys.exit(view(sys.argv[2:]))
    if sys.argv[1:2] == ["calibrate"]:  # `cope calibrate POOLS`: reads pools, runs no cascade
        from cope.calibration.cli import main as calibrate

        sys.exit(calibrate(sys.argv[2:]))
    # before Hydra, whose parser refuses an old dotted alias with a lexer error
    try:
        refuse_renamed(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    run_app()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def run_app(cfg: DictConfig) -> None:

    try:
        result = run(cfg)
    except CopeError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        # the run has already recorded what it finished and written metrics.json
        print(f"interrupted ({str(exc) or 'Ctrl-C'}): finished problems are recorded; continue with "
              "the same command and resume=true", file=sys.stderr)
        sys.exit(130)
    print(summary(result))
    if (result.metrics.get("stopped_reason") or "").startswith("backend"):
        sys.exit(3)  # a sweep or a script must notice that a backend went down


if __name__ == "__main__":
    main()
