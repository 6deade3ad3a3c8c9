# syntax=docker/dockerfile:1
#
# wheelyard's services: the API (`wheelyard api`), the private index (`wheelyard index`,
# pypiserver) and the scheduler (`wheelyard beat`, Celery beat). One image, the command
# picks the service. It builds nothing, so it has no compilers and no sandbox.
#
# Build from the repository root:
#   docker build -f images/service.Dockerfile -t wheelyard/service:dev .

ARG PYTHON_IMAGE=python:3.12.16-slim-trixie

# ---------------------------------------------------------------------------------------
# wheelyard and its dependencies, in a virtual environment copied whole into the final stage.
FROM ${PYTHON_IMAGE} AS app
ARG PIP_VERSION=26.3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/wheelyard \
    && /opt/wheelyard/bin/python -m pip install --no-cache-dir "pip==${PIP_VERSION}"
COPY pyproject.toml README.md /src/
COPY builder /src/builder
COPY server /src/server
RUN /opt/wheelyard/bin/python -m pip install --no-cache-dir "/src[fast-diagnosis]" \
    && /opt/wheelyard/bin/wheelyard --help >/dev/null

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="wheelyard services" \
      org.opencontainers.image.description="wheelyard API, private index (pypiserver) and scheduler"

RUN useradd -l --create-home --uid 10001 --user-group wheelyard \
    && mkdir -p /var/lib/wheelyard/wheels /var/lib/wheelyard/logs \
    && chown -R wheelyard:wheelyard /var/lib/wheelyard

COPY --from=app /opt/wheelyard /opt/wheelyard

# Inside a container the services listen on every interface; the URLs other components use
# to reach them are set per deployment (compose.yaml sets the service names).
ENV PATH=/opt/wheelyard/bin:${PATH} \
    WHEELYARD_DATA_DIR=/var/lib/wheelyard \
    WHEELYARD_API_HOST=0.0.0.0 \
    WHEELYARD_INDEX_HOST=0.0.0.0 \
    WHEELYARD_API_URL=http://127.0.0.1:8000 \
    WHEELYARD_INDEX_URL=http://127.0.0.1:8080 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /var/lib/wheelyard
EXPOSE 8000 8080

# No HEALTHCHECK here: the image runs three different services. compose.yaml gives each its
# own (GET /api/health for the API, GET /health for the index).
ENTRYPOINT ["wheelyard"]
CMD ["api"]
