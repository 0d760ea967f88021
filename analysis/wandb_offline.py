"""Read W&B offline run files (run-*.wandb) without uploading them, and load W&B runs as
analysis runs (`load_offline_run`; `load_api_runs` for runs synced to the service).

The file is a sequence of protobuf `Record`s in a LevelDB-style log: a 7-byte header
(":W&B", magic, version), then 32 KiB blocks of chunks, each with a 7-byte chunk header
(checksum, little-endian length, type: full, first, middle, last).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: str | Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # the block's tail is padding
            pos += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding
            pos += left_in_block
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """Config, summary, group and artifact count of an offline-run-* directory."""
    from wandb.proto import wandb_internal_pb2

    path = next(Path(run_dir).glob("*.wandb"))
    out: dict[str, Any] = {"config": {}, "summary": {}, "group": None, "artifacts": 0, "history": 0}
    for raw in raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"] = record.run.run_group or None
            out["name"] = record.run.display_name
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"] += 1
        elif kind == "artifact":
            out["artifacts"] += 1
    return out


def load_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """An offline W&B run as a run of `cope.results.runs` (config, metrics, problems, cell).

    The per-problem table the tracker logs has each problem's id, answer, gold, correctness,
    resolving stage and cost, but not the per-stage records: paired tests, tables and the
    Pareto plot work from it; per-stage diagnostics need the run directory."""
    from cope.results.runs import cell_label, cell_of

    run_dir = Path(run_dir)
    info = read_offline_run(run_dir)
    config = {k: v for k, v in info["config"].items() if not k.startswith("_")}
    tables = sorted((run_dir / "files" / "media" / "table").glob("problems_*.table.json"))
    if "method" not in config or not tables:
        raise ValueError(f"{run_dir} is not a cope run logged with tracker=wandb (no cope config "
                         "or no per-problem table; a run that never finished logs none)")
    table = json.loads(tables[-1].read_text())
    problems = [dict(zip(table["columns"], row)) for row in table["data"]]
    problems.sort(key=lambda p: p["index"])
    metrics = {k: v for k, v in info["summary"].items() if not k.startswith("_") and k}
    cell = cell_of(config)
    return {"run_dir": str(run_dir), "config": config, "metrics": metrics, "problems": problems,
            "cell": cell, "label": cell_label(cell), "finished": bool(metrics.get("finished")),
            "n_selected": metrics.get("n_selected"), "source": "wandb-offline"}


def find_offline_runs(root: str | Path) -> list[Path]:
    """Every offline W&B run directory (offline-run-*) at or below `root`."""
    return sorted(p.parent for p in Path(root).rglob("run-*.wandb")
                  if p.parent.name.startswith("offline-run-"))


def load_api_runs(path: str, group: str | None = None, download_to: str | Path = "wandb-runs"
                  ) -> list[dict[str, Any]]:
    """Runs synced to W&B (`entity/project`, optionally one sweep group), through the public
    API: each run's `cope-run` artifact is its run directory, downloaded and loaded as one.
    Needs network access and a W&B login."""
    import wandb

    from cope.results.runs import load_run

    out = []
    for run in wandb.Api().runs(path, filters={"group": group} if group else None):
        for artifact in run.logged_artifacts():
            if artifact.type == "cope-run":
                out.append(load_run(artifact.download(root=str(Path(download_to) / run.id))))
    return out
