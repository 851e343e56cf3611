# The MLflow tracking server: the official image, at the mlflow version in requirements/service.lock,
# plus the Postgres driver it lacks (the backend store is the `mlflow` database in Postgres).
# Build context: the repository root.
#
# Why a derived image and not `pip install psycopg2-binary` in the container's command: that would
# download at every start (no network, no start), float to whatever version is current, and run pip
# as root in production. Why not the `-full` tag: it adds every cloud SDK and ML flavour (GBs) for one
# driver. Here the driver is installed once, at the version pinned in requirements/airflow.lock.
ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v3.17.2
FROM ${MLFLOW_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

COPY requirements/airflow.lock /tmp/airflow.lock
RUN grep -E '^psycopg2-binary==' /tmp/airflow.lock > /tmp/driver.txt \
    && pip install -r /tmp/driver.txt \
    && rm /tmp/airflow.lock /tmp/driver.txt \
    && python -c "import mlflow, psycopg2"

# The official image runs as root; the server needs no privileges. The artifact folder is created
# here so the named volume mounted over it starts out owned by this user.
RUN groupadd --gid 1000 mlflow \
    && useradd --uid 1000 --gid mlflow --create-home --shell /usr/sbin/nologin mlflow \
    && mkdir -p /mlartifacts \
    && chown mlflow:mlflow /mlartifacts
USER 1000:1000
WORKDIR /home/mlflow
EXPOSE 5000
