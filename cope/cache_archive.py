"""Generation caches as portable archives: gzipped JSON lines, one generation per line.

The SQLite cache (cope/cache.py) is machine-local and not kept in version control, yet it is
what lets a long experiment resume and its ablation cells reuse the samples they share. An
archive carries it elsewhere: commit it beside the records, hand it to a colleague who then
replays the run exactly with `cache.mode=readonly`, or rebuild a lost cache. Lines use the
format of shared segments (cope/cache_shared.py) and are sorted by key, and the gzip header
has no timestamp, so the same generations always give the same bytes.

    python -m cope.cache_archive export CACHE.sqlite ARCHIVE.jsonl.gz [--model NAME ...]
    python -m cope.cache_archive import ARCHIVE.jsonl.gz CACHE.sqlite
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cope.cache import GenerationCache
from cope.cache_shared import Row, parse_row_line, row_line
from cope.errors import ConfigError

IMPORT_BATCH = 5000  # rows per transaction when importing


def export_archive(cache_path: str | Path, archive_path: str | Path,
                   models: Sequence[str] | None = None) -> int:
    """Write the cache's generations (only those of `models`' identities, if given) to an
    archive; returns how many. Reads without locking, so a run may keep writing meanwhile."""
    cache_path = Path(cache_path)
    if not cache_path.is_file():
        raise ConfigError(f"No generation cache at {cache_path}.")
    db = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True)
    try:
        query = "SELECT key, model, completion FROM generations"
        params: list[str] = []
        if models:
            query += f" WHERE model IN ({','.join('?' * len(models))})"
            params = list(models)
        rows = db.execute(query + " ORDER BY key", params).fetchall()
    finally:
        db.close()
    archive_path = Path(archive_path)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    partial = archive_path.with_name(archive_path.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                   filename="") as packed:
        with io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as text:
            for row in rows:
                text.write(row_line(row))
    os.replace(partial, archive_path)  # an interrupted export never leaves half an archive
    return len(rows)


def read_archive(archive_path: str | Path) -> list[Row]:
    """Every row of an archive; a damaged line is an error naming it (nothing is imported)."""
    archive_path = Path(archive_path)
    if not archive_path.is_file():
        raise ConfigError(f"No cache archive at {archive_path}.")
    rows: list[Row] = []
    try:
        with gzip.open(archive_path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    rows.append(parse_row_line(line))
                except (ValueError, KeyError, TypeError) as error:
                    raise ConfigError(f"{archive_path}, line {number}: not a cached generation "
                                      f"({type(error).__name__}: {error}).") from None
    except (OSError, EOFError) as error:  # not gzip, or cut short
        raise ConfigError(f"{archive_path} is not a complete gzip archive: {error}.") from None
    return rows


def import_archive(archive_path: str | Path, cache_path: str | Path) -> tuple[int, int]:
    """Add an archive's generations to a cache (created if missing); returns (rows read, rows
    new to the cache). Rows already there are left as they are."""
    rows = read_archive(archive_path)
    cache = GenerationCache(cache_path, mode="readwrite")
    try:
        added = sum(cache.import_entries(rows[start:start + IMPORT_BATCH])
                    for start in range(0, len(rows), IMPORT_BATCH))
    finally:
        cache.close()
    return len(rows), added


@contextmanager
def kept_in_archive(cache_path: str | Path, archive_path: str | Path, every_s: float = 600.0
                    ) -> Iterator[None]:
    """For a long experiment that must survive the machine: an empty cache starts from the
    archive, and the archive is rewritten every `every_s` seconds and at the end, so a stop
    loses at most that much of the generations made meanwhile."""
    cache_path, archive_path = Path(cache_path), Path(archive_path)
    if archive_path.exists() and not cache_path.exists():
        import_archive(archive_path, cache_path)
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(every_s):
            if cache_path.exists():
                export_archive(cache_path, archive_path)

    keeper = threading.Thread(target=keep, daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        if cache_path.exists():
            export_archive(cache_path, archive_path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cope.cache_archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a cache's generations to an archive")
    export.add_argument("cache")
    export.add_argument("archive")
    export.add_argument("--model", action="append", default=None,
                        help="only this model identity (repeatable)")
    load = commands.add_parser("import", help="add an archive's generations to a cache")
    load.add_argument("archive")
    load.add_argument("cache")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            count = export_archive(args.cache, args.archive, args.model)
            print(f"exported {count} generations to {args.archive}")
        else:
            read, added = import_archive(args.archive, args.cache)
            print(f"imported {added} new generations of {read} into {args.cache}")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
