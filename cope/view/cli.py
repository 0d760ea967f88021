"""`cope view RUNS_DIR`: the runs below a directory in the browser, served locally, or
written as a static site with --export."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from pathlib import Path

from cope.view.payloads import RunsDir
from cope.view.site import Pages, serve, timed_export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cope view", description="Runs, problems, stages and sweeps in the browser (offline).")
    parser.add_argument("runs_dir", help="a run, a multirun, or a directory of runs")
    parser.add_argument("--export", metavar="DIR", type=Path,
                        help="write a self-contained site to DIR instead of serving")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    args = parser.parse_args(argv)
    root = Path(args.runs_dir)
    if not root.is_dir():
        print(f"cope view: {root} is not a directory: pass a run, a multirun or a directory of runs",
              file=sys.stderr)
        return 2
    pages = Pages(RunsDir(root))
    if args.export:
        if any(args.export.resolve().is_relative_to(p) for p in pages.runs.run_dirs().values()):
            print("cope view: --export must not write into a run directory", file=sys.stderr)
            return 2
        print(timed_export(pages, args.export))
        return 0
    listing = pages.runs.runs_payload()
    server = serve(pages, args.host, args.port)
    url = f"http://{args.host}:{server.server_address[1]}/"
    print(f"cope view: {len(listing['runs'])} runs below {root} at {url} (Ctrl-C stops)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
