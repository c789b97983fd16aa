"""Check a pool's actual positions, or put them into the configured store (see docs/orders.md).

    python -m jobs.positions check --pool A_SHARE --session 2026-08-03 positions.csv
    python -m jobs.positions put   --pool A_SHARE --session 2026-08-03 positions.csv
    python -m jobs.positions show  --pool A_SHARE --session 2026-08-03

``check`` validates a CSV/Parquet table (symbol,shares,cash with one CASH row) against the pool; ``put``
validates it and writes it to the store the assets read (``positions.source: store``); ``show`` prints
what the run would use for that pool and session. Errors are one line on stderr with an exit code by
kind (2 usage, 3 configuration, 4 data, 5 service, 1 other; ``--debug`` for the trace).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def build_parser():
    from jobs.cli import parser

    p = parser("python -m jobs.positions", __doc__.splitlines()[0])
    p.add_argument("command", choices=("check", "put", "show"))
    p.add_argument("file", nargs="?", help="positions table (check, put)")
    p.add_argument("--pool", required=True)
    p.add_argument("--session", required=True, help="YYYY-MM-DD: the holdings after this session's close")
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Every error is one line on stderr and an exit code by kind (see ``jobs/cli.py``)."""
    from jobs.cli import run_main

    return run_main(build_parser(), run, argv)


def run(args) -> int:
    from jobs.cli import parse_date
    from rotation_platform.errors import NotConfiguredError, UsageError

    session = parse_date(args.session, "--session")
    if args.command in ("check", "put") and not args.file:
        raise UsageError(f"{args.command} needs the positions file; see python -m jobs.positions --help")
    if args.config:
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())

    from resources.definitions import resolve_environment, store_resource
    from rotation_platform.config import load_config
    from rotation_platform.production.positions import StorePositions, positions_provider, read_positions_file

    config = load_config()
    if args.pool not in config.pool_names:
        raise NotConfiguredError(f"unknown pool {args.pool!r}; configured: {list(config.pool_names)} "
                                 f"(config {config.name})", key="pools", hint="give --pool a configured name")
    symbols = config.pool(args.pool).symbols
    if args.command in ("check", "put"):
        positions = read_positions_file(args.file, pool=args.pool, session=session, symbols=symbols)
        held = {s: q for s, q in positions.shares.items() if q}
        print(f"{args.file}: {len(held)} fund(s) held, cash {positions.cash:,.2f} {config.pool_currency(args.pool)}")
        if args.command == "put":
            store = store_resource(config.storage, resolve_environment()).open_store()
            try:
                StorePositions(store).put(positions)
            finally:
                store.close()
            print(f"stored as positions {args.pool}|{session.date()} ({config.storage.backend} store)"
                  + ("" if config.positions.source == "store" else
                     "; note: positions.source is not 'store', so runs do not read it"))
        return 0
    store = store_resource(config.storage, resolve_environment()).open_store() \
        if config.positions.source == "store" else None
    try:
        provider = positions_provider(config, store)
        found = provider(args.pool, session, symbols) if provider is not None else None
    finally:
        if store is not None:
            store.close()
    if found is None:
        print(f"no actual positions for {args.pool} on {session.date()} (positions.source: "
              f"{config.positions.source}): the run uses the simulated book")
        return 1
    print(f"{found.source}: cash {found.cash:,.2f} {config.pool_currency(args.pool)}")
    for symbol, q in found.shares.items():
        print(f"  {symbol}  {q:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
