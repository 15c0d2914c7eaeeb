# syntax=docker/dockerfile:1.7
# Multi-stage build: dependencies are built in a throw-away stage; the runtime image
# holds the virtualenv and the source, runs as an unprivileged user, and checks its
# own health. Worker count: SUISHEN_WORKERS (default 1; one per core is a good start).

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only the runtime dependencies (the `server` extra), exact versions, every file checked
# against its hash: no test, lint or load tools in the image. See docs/dependencies.md.
RUN python -m venv /opt/venv
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt
# setuptools and wheel build the wheel in a separate, throw-away venv (locked too), so the
# runtime venv carries no build tools.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY app ./app
COPY codecs ./codecs
COPY keys ./keys
COPY verifiers ./verifiers
COPY sdk ./sdk
# A regular (non-editable) install of a wheel: the symlinks in src/suishen are followed
# and the package is copied into the virtualenv. --no-deps: everything it needs is above;
# `pip check` fails the build if the lock and pyproject.toml disagree; the setuptools
# that `python -m venv` seeds is not needed at run time.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist . \
 && /opt/venv/bin/pip install --no-deps /tmp/dist/suishen-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall -q -y setuptools \
 && /opt/venv/bin/python -c "import suishen.app.main, suishen.codecs.sc1"

FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SUISHEN_HOST=0.0.0.0 \
    SUISHEN_PORT=8000 \
    SUISHEN_DATA_DIR=/var/lib/suishen
# A CJK font for the venue posters' PNG (a venue's Chinese name under its QR code,
# app/poster.py); without one Pillow's built-in font has no Chinese glyphs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 suishen \
 && useradd --system --uid 10001 --gid suishen --home-dir /var/lib/suishen --shell /usr/sbin/nologin suishen \
 && mkdir -p /var/lib/suishen && chown suishen:suishen /var/lib/suishen && chmod 0700 /var/lib/suishen
COPY --from=build /opt/venv /opt/venv
USER suishen:suishen
WORKDIR /var/lib/suishen
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SUISHEN_PORT','8000'), timeout=2)"]
# SIGTERM lets uvicorn finish requests and the lifespan drain the audit queue.
STOPSIGNAL SIGTERM
ENTRYPOINT ["suishen"]
CMD ["serve"]
