# One image for every Pulse service in docker-compose.yml (setup, generator, aggregator, store, archive, dashboard).
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PULSE_HOME=/var/lib/pulse
WORKDIR /opt/pulse
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
 && useradd --system --home-dir /var/lib/pulse --create-home pulse
USER pulse
ENTRYPOINT ["pulse"]
CMD ["--help"]
