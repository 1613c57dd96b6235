# syntax=docker/dockerfile:1
# iam-service: one image, four roles (web, worker, beat, migrate). The commands come from
# iam_project/roles.py (tests check every copy against it); see docs/runbook.md.
#   web:     gunicorn -c iam_project/gunicorn.conf.py iam_project.wsgi   (default CMD)
#   worker:  celery -A iam_project worker --loglevel INFO
#   beat:    celery -A iam_project beat --loglevel INFO --schedule /tmp/celerybeat-schedule
#   migrate: python manage.py migrate --noinput

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtualenv with the runtime lock (every package pinned, with hashes) ----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every dependency ships manylinux wheels (psycopg[binary] included): no compiler needed. pip check
# fails the build on a package whose own requirements the lock does not satisfy.
RUN /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check

# --- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    IAM_ENV=production \
    PORT=8000 \
    WORKER_METRICS_PORT=9100

RUN groupadd --system --gid 10001 iam \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin iam

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY . /app

# Static files for the admin console and the API schema pages, collected at build time. No database
# or broker exists here: IAM_BUILD=1 tells the settings to skip the production configuration
# checks (DATABASE_URL, SECRET_KEY, ...). Bytecode is compiled now because the root filesystem is
# read-only at run time.
RUN IAM_BUILD=1 python manage.py collectstatic --noinput \
 && python -m compileall -q /app \
 && mkdir -p /tmp/prometheus \
 && chown 10001:10001 /tmp/prometheus

USER 10001:10001

EXPOSE 8000 9100

# Liveness of the web role only (no I/O in /healthz). The worker and beat override it
# (docker-compose.yml, Kubernetes probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["gunicorn", "-c", "iam_project/gunicorn.conf.py", "iam_project.wsgi"]
