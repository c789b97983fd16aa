#!/usr/bin/env bash
# Set up .venv with the test dependencies and run the whole test suite (extra arguments go to pytest).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
setup_env "dev"
exec .venv/bin/python -m pytest "$@"
