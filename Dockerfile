# envoy-injector image: `docker build -t envoy-injector:0.1.0 .`
#
# Two stages: the builder installs the project and its dependencies into a virtualenv (all
# runtime dependencies ship binary wheels, so no compiler is needed even there); the final image
# gets only that virtualenv, on the same slim base (the virtualenv's python is a symlink to the
# base image's interpreter, so both stages must use the same image), and runs as the non-root
# user 10001 that the Kubernetes manifests (manifests/injector) pin with runAsUser.
#
# The base is pinned by tag (Python 3.11, Debian bookworm). For reproducible builds pin it by
# digest too: FROM python:3.11-slim-bookworm@sha256:...

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook/ webhook/
COPY certs/ certs/
COPY kubeapi/ kubeapi/
COPY controller/ controller/
# A regular (non-editable) install of the project from this directory; its dependencies are
# bounded by pyproject.toml. pip compiles the bytecode here, because the final image's root
# filesystem is read-only at run time.
RUN pip install --no-cache-dir . \
    && pip check


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="envoy-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects an Envoy sidecar" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 envoy-injector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin envoy-injector

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
EXPOSE 8443

ENTRYPOINT ["envoy-injector"]
CMD ["serve"]
