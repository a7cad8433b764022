# syntax=docker/dockerfile:1
# One image for both processes: `labelops operator` (the chart's Deployment) and
# `labelops worker` (the Deployments the operator creates per campaign).
#
#   make image                       # docker build -t labelops:0.1.0 .
#
# The base is pinned by tag. Pin it by digest where images can be pulled:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
# and build with --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install labelops and its dependencies into a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/labelops
WORKDIR /src
# Every dependency ships a manylinux wheel, so the build needs no compiler.
COPY pyproject.toml ./
COPY operator ./operator
RUN /opt/labelops/bin/pip install --no-compile . \
    && /opt/labelops/bin/python -m compileall -q /opt/labelops/lib

# --- runtime: the virtualenv on the same base, run as an unprivileged user --------------
FROM ${PYTHON_IMAGE}
# A fixed numeric uid lets Kubernetes check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 labelops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin labelops
COPY --from=build /opt/labelops /opt/labelops
# Bytecode was compiled at build time: the root filesystem is mounted read-only.
ENV PATH=/opt/labelops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# 8080 worker HTTP API, 8081 operator health, 9090 metrics.
EXPOSE 8080 8081 9090
ENTRYPOINT ["labelops"]
CMD ["operator"]
