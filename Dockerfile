# syntax=docker/dockerfile:1
# One image for every notifyflow process (deploy/ runs each with its own command):
#   python -m bytewax.run flows.notifications:flow              the notification flow
#   python -m bytewax.run "flows.delivery:build('push', 'high')"  a delivery flow (channel, lane)
#   notifyflow analytics | notifyflow gateway | notifyflow setup | any other notifyflow command
# Real servers come from KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL, CLICKHOUSE_URL: the image has
# no embedded servers (the package is installed without its `local` extra).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A compiler for any dependency without a wheel for the platform; only this stage has one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
# The virtualenv's path is the run stage's too: its scripts name their interpreter by absolute path.
RUN python -m venv /opt/notifyflow
ENV PATH=/opt/notifyflow/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN pip install --upgrade pip setuptools \
 && pip install . \
 && python -m compileall -q /opt/notifyflow

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 notifyflow \
 && useradd --system --uid 10001 --gid notifyflow --home-dir /var/lib/notifyflow --create-home notifyflow \
 && mkdir -p /var/lib/notifyflow/recovery \
 && chown notifyflow:notifyflow /var/lib/notifyflow/recovery
COPY --from=build /opt/notifyflow /opt/notifyflow
# NOTIFYFLOW_HOME holds what a process keeps locally; recovery stores are mounted volumes below it.
ENV PATH=/opt/notifyflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFYFLOW_HOME=/var/lib/notifyflow
WORKDIR /var/lib/notifyflow
USER 10001:10001
# gateway, analytics dashboard and SQL, bytewax's /metrics (BYTEWAX_DATAFLOW_API_ENABLED=true),
# bytewax cluster traffic between a flow's processes.
EXPOSE 8000 8100 3030 2101
# bytewax stops a flow at its next step on SIGINT, and uvicorn drains connections on it.
STOPSIGNAL SIGINT
CMD ["notifyflow", "--help"]
