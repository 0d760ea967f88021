"""Replay a finished run from its generations: the same records, no backend call.

    python -m cope.replay RUN_DIR --archive GENERATIONS.jsonl.gz --out OUT_DIR
    python -m cope.replay RUN_DIR --cache CACHE.sqlite --out OUT_DIR

The run's own config.yaml is the config, so a run made under former aliases or defaults
replays as it was made. The cache is only read (`cache.mode=readonly`: a missing generation
is an error) and rows keyed before keys carried settings and batches answer
(`cache.reuse_former_keys`: the run's own generations were made under its settings). Local
models are not loaded: a packaged model's identity is known without its weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from cope.cache_archive import import_archive
from cope.config import CopeConfig
from cope.errors import CopeError
from cope.records import CONFIG
from cope.runner import RunResult, run


def replay_config(run_dir: str | Path, cache_path: str | Path, out_dir: str | Path
                  ) -> DictConfig:
    """The config of the run in `run_dir`, set to replay into `out_dir` from `cache_path`."""
    recorded = yaml.safe_load((Path(run_dir) / CONFIG).read_text())
    cfg = OmegaConf.merge(OmegaConf.structured(CopeConfig), recorded)
    cfg.cache.path = str(cache_path)
    cfg.cache.mode = "readonly"
    cfg.cache.reuse_former_keys = True
    cfg.cache.shared_dir = None
    cfg.run_dir = str(out_dir)
    cfg.resume = False
    cfg.progress = False
    cfg.tracker.name = "none"
    return cfg


def replay(run_dir: str | Path, out_dir: str | Path, cache: str | Path | None = None,
           archive: str | Path | None = None) -> RunResult:
    """Replay the run in `run_dir` into `out_dir`, from a cache file or an archive."""
    if (cache is None) == (archive is None):
        raise ValueError("replay from a cache or from an archive (one of them)")
    if cache is not None:
        return run(replay_config(run_dir, cache, out_dir))
    with tempfile.TemporaryDirectory(prefix="cope-replay-") as scratch:
        path = Path(scratch) / "generations.sqlite"
        import_archive(archive, path)
        return run(replay_config(run_dir, path, out_dir))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cope.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a finished run (its config.yaml)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archive", help="a generation archive (python -m cope.cache_archive)")
    source.add_argument("--cache", help="a generation cache (SQLite)")
    parser.add_argument("--out", required=True, help="where the replayed records go")
    args = parser.parse_args(argv)
    try:
        result = replay(args.run_dir, args.out, cache=args.cache, archive=args.archive)
    except CopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"replayed {len(result.problems)} problems into {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
