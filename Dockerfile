# rumba-bids BIDS-App container.
#
#   docker build -t rumbabids/rumba-bids:dev .      # or: bash tools/build_image.sh TAG (podman)
#   docker run --rm --read-only --tmpfs /tmp --network none --user "$(id -u):$(id -g)" \
#       -v /data/bids:/data:ro -v /data/out:/out -v /data/work:/work rumbabids/rumba-bids:dev \
#       /data /out participant --participant-label 01 -w /work
#
# Mount a writable work directory (or use -w /tmp/work with --tmpfs /tmp): the default,
# <output_dir>/../work, is /work here, which a non-root user cannot create in the image
# (exit 73).
#
# The install below is the one .ci/run tests: the same pip, the same constraints file
# (requirements/constraints.txt, pinned runtime + test versions from one resolve), so what CI
# proves is what the container gets. bids-validator-deno (pinned there too) makes BIDS
# validation work out of the box.
#
# Runtime: non-root user, read-only image, no network (Nipype's version check is off), nothing
# written under $HOME: HOME and the matplotlib / Deno caches point at /tmp, which exists and is
# writable for any --user and under `apptainer run --containall`. numba keeps the compiled
# kernels of rumba_bids.core.kernels in NUMBA_CACHE_DIR: the first fit of a container compiles
# them (about 2.5 s), later processes load them.

# Python minor version = the one requirements/constraints.txt was resolved with. A build
# argument so that a local stand-in can replace it where no registry is reachable
# (tools/build_image.sh: Debian bookworm from debootstrap + Debian's python3 3.11).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown

LABEL org.opencontainers.image.title="rumba-bids" \
      org.opencontainers.image.description="RUMBA-SD fibre orientation distributions for BIDS diffusion MRI datasets (BIDS-App)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/rumba-bids/rumba-bids" \
      org.opencontainers.image.url="https://github.com/rumba-bids/rumba-bids" \
      org.opencontainers.image.documentation="https://github.com/rumba-bids/rumba-bids#readme" \
      org.opencontainers.image.licenses="BSD-3-Clause"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml setup.cfg README.md ./
COPY rumba_bids rumba_bids

# Same two lines as .ci/run (there with -e ".[test]"): pinned pip first, then the package, its
# dependencies and the build backend all from the constraints file.
RUN python -m pip install --no-cache-dir -c requirements/constraints.txt --upgrade pip \
    && python -m pip install --no-cache-dir -c requirements/constraints.txt \
        --build-constraint requirements/constraints.txt . bids-validator-deno \
    && python -m pip check \
    && rm -rf /src \
    && groupadd --system --gid 1000 rumba \
    && useradd --system --uid 1000 --gid rumba --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin rumba

ENV HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    DENO_DIR=/tmp/deno \
    DENO_NO_UPDATE_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    NIPYPE_NO_ET=1

USER 1000:1000
WORKDIR /tmp

# Fail the build, not the first user, when the entry point is broken.
RUN rumba-bids --version \
    && bids-validator-deno --version \
    && find /tmp -mindepth 1 -delete

ENTRYPOINT ["rumba-bids"]
