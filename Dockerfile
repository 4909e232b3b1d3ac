# The image both services of docker-compose.yml run: tcpstress installed from
# this checkout, nothing prebuilt. Build context: the repository (see .dockerignore).
# BASE_IMAGE: any Debian-like image with Python 3.11+, pip and apt-get;
# tests/containers builds on a local one (`--build-arg BASE_IMAGE=...`) where
# no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# iproute2 for `ss` and `ip`: a second look at the sockets from inside a
# container (docker compose exec loader ss -tan state time-wait).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
# The README's install: pip install of the project directory (dependencies
# come from PyPI). Not editable: the image must not depend on the checkout.
RUN pip install --no-cache-dir --disable-pip-version-check .

# Unbuffered, so the summary and the findings reach `docker compose` logs as
# they are printed; Agg, because a container has no display.
ENV PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg
# matplotlib builds its font cache on first import: once here, not in every run.
RUN python -c "import matplotlib.pyplot"

# Runs land in /app/reports (the default reports/<UTC time>-<name>/), which
# docker-compose.yml mounts from ./reports on the host.
CMD ["tcpstress", "--help"]
