"""The viewer's pages: a static front end (static/) that loads its data as small scripts,
`data/runs.js`, `data/run/<run>.js` and `data/problem/<run>/<problem>.js`, each calling
`copeData(path, payload)`. Scripts rather than fetched JSON, so that an exported site opens
from the file system (browsers refuse fetch() on file:// pages) and the server and the export
share one front end.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cope.view.payloads import RunsDir, file_key

STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png"}


def script(path: str, payload: object) -> bytes:
    return f"copeData({json.dumps(path)}, {json.dumps(payload, ensure_ascii=False)});\n".encode()


def _index_html(mode: str) -> bytes:
    """index.html with how the page gets its data: live (a server that re-reads the records)
    or exported (files written once)."""
    html = (STATIC / "index.html").read_text()
    return html.replace("{{MODE}}", mode).encode()


class Pages:
    """Page paths -> bytes, for the server and the export alike."""

    def __init__(self, runs: RunsDir) -> None:
        self.runs = runs

    def data(self, path: str) -> bytes:
        """The script at `path` (data/...); KeyError when there is no such run or problem."""
        parts = path.removesuffix(".js").split("/")
        if parts == ["data", "runs"]:
            return script(path, self.runs.runs_payload())
        if len(parts) == 3 and parts[1] == "run":
            return script(path, self.runs.run_payload(self._run_key(parts[2])))
        if len(parts) == 4 and parts[1] == "problem":
            key = self._run_key(parts[2])
            problem = next((str(p.get("id")) for p in self.runs.run(key)["problems"]
                            if file_key(str(p.get("id"))) == parts[3]), None)
            if problem is None:
                raise KeyError(f"run {key!r} has no problem file {parts[3]!r}")
            return script(path, self.runs.problem_payload(key, problem))
        raise KeyError(path)

    def _run_key(self, file: str) -> str:
        for key in self.runs.run_dirs():
            if file_key(key) == file:
                return key
        raise KeyError(f"no run with file name {file!r}")

    def export(self, out: Path) -> dict[str, int]:
        """Every page below `out`: index.html, the front end, and one data script per run and
        per problem. Returns counts of what was written."""
        out.mkdir(parents=True, exist_ok=True)
        if (out / "data").exists():
            shutil.rmtree(out / "data")  # runs that are gone leave no pages behind
        (out / "index.html").write_bytes(_index_html("export"))
        for name in ("app.js", "style.css"):
            shutil.copyfile(STATIC / name, out / name)
        listing = self.runs.runs_payload()
        _write(out / "data" / "runs.js", script("data/runs.js", listing))
        counts = {"runs": 0, "problems": 0}
        for run in listing["runs"]:
            payload = self.runs.run_payload(run["key"])
            path = f"data/run/{run['file']}.js"
            _write(out / path, script(path, payload))
            counts["runs"] += 1
            for problem in payload["problems"]:
                path = f"data/problem/{run['file']}/{problem['file']}.js"
                _write(out / path, script(path, self.runs.problem_payload(run["key"], problem["id"])))
                counts["problems"] += 1
        return counts


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def serve(pages: Pages, host: str, port: int) -> ThreadingHTTPServer:
    """A server for `pages` (not yet serving: call serve_forever)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server interface)
            path = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
            try:
                if path == "index.html":
                    self._send(_index_html("live"), ".html")
                elif path.startswith("data/") and path.endswith(".js"):
                    self._send(pages.data(path), ".js")
                elif path in ("app.js", "style.css"):
                    self._send((STATIC / path).read_bytes(), Path(path).suffix)
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)
            except KeyError as exc:
                self._send(script(path, {"error": str(exc).strip("'\"")}), ".js")
            except Exception as exc:  # the page says what failed; the server goes on
                print(f"cope view: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
                self._send(script(path, {"error": f"{type(exc).__name__}: {exc}"}), ".js")

        def _send(self, body: bytes, suffix: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", CONTENT_TYPES[suffix])
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")  # records change while a run goes on
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass  # one line per data script would bury the notes that matter

    return ThreadingHTTPServer((host, port), Handler)


def timed_export(pages: Pages, out: Path) -> str:
    start = time.perf_counter()
    counts = pages.export(out)
    return (f"wrote {out}/index.html: {counts['runs']} runs, {counts['problems']} problems "
            f"in {time.perf_counter() - start:.1f} s")
