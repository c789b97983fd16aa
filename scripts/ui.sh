#!/usr/bin/env bash
# Open the Dagster UI (http://127.0.0.1:3000) on the same instance and data as scripts/demo.sh.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
setup_env ""
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
