# syntax=docker/dockerfile:1
#
# intercom-sidecar, as the image Kubernetes runs next to your service (see deploy/kubernetes/ and the README section
# "Deploy on Kubernetes").
#
#   docker build -t intercom-sidecar:0.1.0 .
#
# - Two stages: `build` installs the locked dependencies and the sidecar into a virtualenv; the final stage is a fresh
#   python:3.11-slim with that virtualenv copied in, and no pip, no uv, no compiler, no build files.
# - Dependencies come from uv.lock: `uv export` writes them with their sha256 hashes and pip installs them with
#   --require-hashes (any file whose hash is not in the lock is refused) and --only-binary (no source builds). uv
#   itself is installed the same way, from the hashes of its Linux wheels below (change them with UV_VERSION).
# - The base image is named by tag. For a reproducible build, pin it by digest:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
#   (`docker buildx imagetools inspect python:3.11-slim-bookworm` prints the digest).
# - Runs as uid/gid 10001 and writes nothing outside INTERCOM_SIDECAR_SPOOL_DIR (and /tmp): the bytecode is compiled
#   at build time and PYTHONDONTWRITEBYTECODE stops Python trying to write more, so a read-only root filesystem works.
# - No init process (tini): the sidecar is PID 1 and handles SIGTERM/SIGINT itself (asyncio signal handlers: readiness
#   NOT_SERVING at once, drain for up to INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS, exit 0). It starts no child
#   processes, so there are no zombies to reap. See the README for the one window where that differs from an init.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.8
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_NO_CACHE=1
RUN printf 'uv==%s %s %s %s\n' "${UV_VERSION}" \
        --hash=sha256:e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984 \
        --hash=sha256:5337c30bb893b4f9ce0ceb921ba2da0d13f649da644f40ad3bef84083bef0203 \
        --hash=sha256:0b3e8b1a4f5e405e31e2ff33de8af4744831e9f7338539671efbd8c3c94e791d \
        > /tmp/uv-requirements.txt \
    && pip install --require-hashes --only-binary=:all: --requirement /tmp/uv-requirements.txt
WORKDIR /src

# 1. The dependencies, exactly as locked: a layer that changes only when uv.lock does.
COPY pyproject.toml uv.lock ./
RUN uv export --quiet --frozen --no-dev --no-emit-project --format requirements-txt --output-file requirements.txt \
    && python -m venv --without-pip /opt/intercom-sidecar \
    && pip --python /opt/intercom-sidecar/bin/python install \
        --require-hashes --no-deps --only-binary=:all: --requirement requirements.txt

# 2. The sidecar itself, as a wheel built from this checkout (its dependencies are all in place already).
COPY README.md ./
COPY intercom_sidecar ./intercom_sidecar
RUN uv build --wheel --out-dir /tmp/dist \
    && pip --python /opt/intercom-sidecar/bin/python install --no-deps /tmp/dist/*.whl \
    && /opt/intercom-sidecar/bin/intercom-sidecar --version


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="intercom-sidecar" \
      org.opencontainers.image.description="A gRPC sidecar that delivers Segment-spec customer events to Intercom." \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and fsGroup/runAsGroup can match it.
RUN groupadd --system --gid 10001 intercom-sidecar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin intercom-sidecar \
    && install --directory --owner 10001 --group 10001 --mode 0700 /var/lib/intercom-sidecar/spool

COPY --from=build /opt/intercom-sidecar /opt/intercom-sidecar

ENV PATH="/opt/intercom-sidecar/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INTERCOM_SIDECAR_LISTEN=127.0.0.1:50051 \
    INTERCOM_SIDECAR_HEALTH_LISTEN=0.0.0.0:50052 \
    INTERCOM_SIDECAR_SPOOL_DIR=/var/lib/intercom-sidecar/spool

WORKDIR /var/lib/intercom-sidecar
USER 10001:10001

# 50051: the gRPC API. It listens on 127.0.0.1 (INTERCOM_SIDECAR_LISTEN): other containers of the pod reach it on
#        localhost, nothing outside the pod does. 50052: grpc.health.v1 only, on every address, for the kubelet's probes.
EXPOSE 50051 50052
STOPSIGNAL SIGTERM
ENTRYPOINT ["intercom-sidecar", "serve"]
