# One image for every role: the command picks it (damselfly scheduler | manager | injector,
# dfdaemon, dfget). Build: docker build -t damselfly . (see docs/kubernetes.md).
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: compilers only here, for a dependency without a wheel on this platform ---------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/damselfly \
    && /opt/damselfly/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/damselfly/bin/pip install --no-cache-dir . \
    && /opt/damselfly/bin/python -c "import damselfly, aiohttp, grpc, blake3, opendal"

# -- runtime: the virtualenv and a user; no compiler, no pip cache --------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="damselfly" \
      org.opencontainers.image.description="Peer-to-peer distribution of AI models and other large files" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 damselfly \
    && useradd --system --uid 10001 --gid damselfly --home-dir /var/lib/damselfly \
       --create-home --shell /usr/sbin/nologin damselfly
COPY --from=build /opt/damselfly /opt/damselfly
ENV PATH=/opt/damselfly/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAMSELFLY_HEALTH_URL=http://127.0.0.1:4002/healthz
# Non-root by default (scheduler, manager, injector, seed peers on a PVC). The node daemon
# needs root for its host paths: the Helm chart runs that one container as uid 0.
USER 10001:10001
WORKDIR /var/lib/damselfly
# upload, metrics (daemon), scheduler gRPC and metrics, manager, injector, proxy/mirror
EXPOSE 4000 4002 8002 8004 8080 9443 65001
# Docker and Podman use this; Kubernetes uses the chart's probes. Set DAMSELFLY_HEALTH_URL per
# role (scheduler :8004, manager :8080).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['DAMSELFLY_HEALTH_URL'], timeout=4)"]
CMD ["damselfly", "--help"]
