# One image for the Dagster webserver, daemon and the user-code gRPC server.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home NUMBA_CACHE_DIR=/opt/dagster/numba-cache
WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY rotation_platform ./rotation_platform
RUN pip install --no-cache-dir -e . "dagster-postgres==0.29.27" "sqlalchemy>=2" "pymysql>=1.1" "redis>=5" "influxdb-client>=1.40"
COPY assets ./assets
COPY resources ./resources
COPY jobs ./jobs
COPY configs ./configs
COPY definitions.py workspace.yaml ./
COPY deploy ./deploy
RUN mkdir -p "$DAGSTER_HOME" "$NUMBA_CACHE_DIR" && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
