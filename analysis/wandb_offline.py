"""Read W&B offline run files (run-*.wandb) without uploading them.

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
