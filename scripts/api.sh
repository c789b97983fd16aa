#!/usr/bin/env bash
# Set up .venv with the API's dependencies and serve the REST API (docs/api.md) on the configured store.
#   ./scripts/api.sh [--host 127.0.0.1] [--port 8080]     serve (keys: ./scripts/api.sh keys add NAME --role trader)
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
setup_env "api"
exec .venv/bin/python -m api "$@"
