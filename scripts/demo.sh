#!/usr/bin/env bash
# Set up .venv and run the daily job for every pool on the embedded default (synthetic data, local files).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
setup_env ""
exec .venv/bin/python -m jobs.main "$@"
