"""``python -m api`` serves the API with uvicorn; ``python -m api keys add|revoke|list`` manages the keys.

    python -m api [--host 127.0.0.1] [--port 8080] [--workers 1] [--no-access-log] [--config FILE]
    python -m api keys add NAME --role viewer|trader|admin     # prints the new key once
    python -m api keys revoke KEY_ID
    python -m api keys list
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the API (the default)")
    for q in (p, serve):
        q.add_argument("--host", default=None, help="address to listen on (default $ROTATION_API_HOST or 127.0.0.1)")
        q.add_argument("--port", type=int, default=None, help="port (default $ROTATION_API_PORT or 8080)")
        q.add_argument("--workers", type=int, default=None,
                       help="worker processes, each on its own socket of the address (default $ROTATION_API_WORKERS "
                            "or 1; api/serve.py)")
        q.add_argument("--no-access-log", dest="access_log", action="store_false",
                       help="no access log line per request (the audit log still records every orders read "
                            "and launch)")
    keys = sub.add_parser("keys", help="add, revoke or list API keys")
    ks = keys.add_subparsers(dest="action", required=True)
    add = ks.add_parser("add")
    add.add_argument("name", help="who or what uses the key")
    add.add_argument("--role", required=True, choices=("viewer", "trader", "admin"))
    rev = ks.add_parser("revoke")
    rev.add_argument("key_id")
    ks.add_parser("list")
    args = p.parse_args(argv)

    from api.keys import KeyFileError, KeyStore
    from api.settings import ApiSettings, SettingsError, platform_env
    from rotation_platform.config import default_config_path, load_config
    from rotation_platform.errors import RotationError, one_line

    try:
        config_path = args.config or str(default_config_path())
        config = load_config(config_path, env=platform_env())
        settings = ApiSettings.from_env(config.storage.data_dir)
        if args.command == "keys":
            store = KeyStore(settings.keys_file, settings.pepper)
            if args.action == "add":
                key, text = store.add(args.name, args.role)
                print(f"key {key.id} ({key.role}, {key.name}) added to {settings.keys_file}; it is shown once:")
                print(text)
            elif args.action == "revoke":
                key = store.revoke(args.key_id)
                print(f"key {key.id} ({key.role}, {key.name}) revoked at {key.revoked}")
            else:
                for key in store.list():
                    print(f"{key.id}  {key.role:<6}  {'revoked ' + key.revoked if key.revoked else 'active':<33}  "
                          f"{key.created}  {key.name}")
            return 0
    except (SettingsError, KeyFileError, RotationError) as exc:  # one line, as the job's command line
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 3

    import uvicorn

    from api.app import create_app

    from rotation_platform.observability.logs import configure

    try:
        configure(default="json")  # JSON lines on stderr (ROTATION_LOG_FORMAT, ROTATION_LOG_FILE), access log too
    except RotationError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 3
    os.environ.setdefault("ROTATION_CONFIG", config_path)
    host, port = args.host or settings.host, args.port or settings.port
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        print(f"error: --workers {workers}: give 1 or more worker processes", file=sys.stderr)
        return 2
    if workers > 1:  # a socket per worker (SO_REUSEPORT): the kernel spreads the connections evenly
        from api.serve import serve

        return serve(config_path, host, port, workers, log_level="info", log_config=None,
                     access_log=args.access_log)
    app = create_app(config_path)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=args.access_log,
                log_config=None)  # uvicorn's loggers, access log included, reach the root logger's JSON handlers
    return 0


if __name__ == "__main__":
    sys.exit(main())
