# Test-only stand-in for python:3.11-slim, built from a local debootstrap import (no registry
# is reachable in CI). Python lives in a venv on PATH, like the official images' /usr/local and
# pytorch/pytorch's /opt/conda, so the project's Dockerfile can run plain `pip`/`python`.
ARG DEBIAN_IMAGE=hpo-ci/debian:bookworm
FROM ${DEBIAN_IMAGE}
# The host's CA bundle: pip inside the build reaches the package index only through it.
COPY ca-certificates.crt /etc/ssl/certs/hpo-host-ca.crt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/hpo-host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
