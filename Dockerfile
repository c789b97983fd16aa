# One image for the Dagster webserver, daemon and the user-code gRPC server.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home NUMBA_CACHE_DIR=/opt/dagster/numba-cache
WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY rotation_platform ./rotation_platform
# storage clients, pinned to the versions the storage tests run against (dagster-postgres 0.29.27
# belongs to dagster 1.13.27, pinned in pyproject.toml)
RUN pip install --no-cache-dir -e '.[celery,api]' \
        "dagster-postgres==0.29.27" "psycopg2-binary==2.9.13" \
        "SQLAlchemy==2.1.9" "PyMySQL==1.2.4" "redis==8.1.0" "influxdb-client==1.50.0" "requests==2.34.2"
COPY assets ./assets
COPY resources ./resources
COPY jobs ./jobs
COPY api ./api
COPY configs ./configs
COPY definitions.py workspace.yaml ./
COPY deploy ./deploy
# the processes run as an unprivileged user with a fixed uid; the code stays root-owned (read-only to
# them), only the instance home, the numba cache and the data folder (a volume) are theirs
RUN groupadd --system --gid 10001 rotation \
    && useradd --system --uid 10001 --gid rotation --home-dir /opt/dagster/home --no-create-home \
       --shell /usr/sbin/nologin rotation \
    && mkdir -p "$DAGSTER_HOME" "$NUMBA_CACHE_DIR" /opt/dagster/data \
    && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && chown -R rotation:rotation "$DAGSTER_HOME" "$NUMBA_CACHE_DIR" /opt/dagster/data
USER 10001:10001
EXPOSE 3000 4000
