# The image every master service and the compose builder run from (see docker-compose.yml),
# installed as operators install piw: a wheel built from this tree, then "piw[master]" from it
# into a venv, run as the user piw from an empty directory (no checkout in the image).
# BASE: any Debian bookworm with python3 and python3-venv; where no registry is reachable, a
# debootstrap of bookworm imported as an image (docs/deployment.md says how).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS wheel
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY piw_services ./piw_services
COPY builders ./builders
COPY config ./config
RUN python3 -m venv /tmp/build && /tmp/build/bin/pip install --no-cache-dir build \
    && /tmp/build/bin/python -m build --wheel --outdir /wheels .

FROM ${BASE}
COPY --from=wheel /wheels /wheels
# openssl: piw-broker-cert makes the broker's TLS certificate with it
RUN apt-get update && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/piw \
    && /opt/piw/bin/pip install --no-cache-dir "$(ls /wheels/piw-*.whl)[master]" \
    && rm -rf /wheels \
    && useradd --system --home-dir /srv/piw --create-home piw
ENV PATH=/opt/piw/bin:$PATH
WORKDIR /srv/piw
USER piw
