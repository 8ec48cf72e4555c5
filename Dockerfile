# The image every master service and builder runs from (see docker-compose.yml).
FROM python:3.11-slim-bookworm
WORKDIR /srv/piw
COPY setup.cfg pyproject.toml README.md ./
COPY piw_services ./piw_services
COPY builders ./builders
COPY config ./config
RUN pip install --no-cache-dir 'setuptools<81' . && useradd --system piw
USER piw
