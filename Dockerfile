# One image for every Pulse service in docker-compose.yml (setup, generator, aggregator, store, archive, dashboard).
# Stage 1 builds Pulse's wheel, native aggregation core (Rust, native/) included; the runtime stage needs no compiler.
FROM rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /build-venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY native ./native
COPY src ./src
RUN /build-venv/bin/pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PULSE_HOME=/var/lib/pulse
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --system --home-dir /var/lib/pulse --create-home pulse
USER pulse
ENTRYPOINT ["pulse"]
CMD ["--help"]
