"""Fetch the missing daily bars of the configured funds from eastmoney (akshare's ``fund_etf_hist_em``
endpoint) into the drop folder, and say per fund what was written.

    python -m jobs.fetch [--config FILE] [--until YYYY-MM-DD] [--symbols 510300 159915 ...] [--json]

The folder is ``data.directory``; the server, timeout, retries, backoff and rate limit are
``data.akshare.*`` (docs/live-data.md). Each fund is fetched from its file's last bar through the last
closed session of its pool's calendar (close plus the market's data delay), or through ``--until`` when
that is earlier; a fund whose file is current is skipped without a request. Per fund the output gives the
rows appended and their date range, the factor rows, the restatements (re-fetched bars that differ from the
file: reported, the file is kept) and the requests and retries it took. A fund that fails -- unknown to the
server, a server error or timeout that outlasts the retries -- is one line naming the fund and the server's
host; the other funds are fetched and written all the same, and the exit code is that of the first failure
(5 for a server that did not answer). Works for any ``data.source``: with ``directory`` it fills the folder
the daily run reads; with ``akshare`` the run fetches by itself and this command is the manual way to do it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jobs.cli import EXIT_OK, exit_code, parse_date, parser, run_main
from rotation_platform.errors import UsageError

__all__ = ["build_parser", "main", "run"]


def build_parser():
    p = parser("python -m jobs.fetch", __doc__.splitlines()[0])
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    p.add_argument("--until", metavar="YYYY-MM-DD",
                   help="fetch through this day at the latest (default: each pool's last closed session)")
    p.add_argument("--symbols", nargs="+", metavar="CODE",
                   help="funds to fetch (default: every fund of every pool); each must be configured")
    p.add_argument("--json", action="store_true", help="print the fetch report as one JSON document")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


def run(args) -> int:
    if args.config:
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())
    until = parse_date(args.until, "--until") if args.until else None

    from rotation_platform.config import default_config_path, load_config
    from rotation_platform.data.sources.akshare_em import akshare_source

    config_file = str(Path(default_config_path()).resolve())
    config = load_config(config_file)
    configured = [s for p in config.pools for s in p.symbols]
    symbols = list(dict.fromkeys(args.symbols)) if args.symbols else configured
    unknown = [s for s in symbols if s not in configured]
    if unknown:
        raise UsageError(f"--symbols: {unknown} are in no pool of {config_file}; configured funds: {configured}")
    if config.data.directory is None:
        raise UsageError(f"{config_file} sets no data.directory: the drop folder to fetch into; set it "
                         f"(data.source akshare or directory)")

    report = akshare_source(config, end=until).fetch(symbols)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"fetch from {report.host} into {report.directory}:")
        for line in report.lines():
            print(f"  {line}")
    failed = report.failed
    for fund in failed:
        print(f"error: {fund.error.one_line()}", file=sys.stderr, flush=True)  # type: ignore[union-attr]
    if failed:
        print(f"{len(failed)} of {len(report.funds)} fund(s) failed; what was fetched for the others is kept",
              file=sys.stderr, flush=True)
        return exit_code(failed[0].error)  # type: ignore[arg-type]
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
