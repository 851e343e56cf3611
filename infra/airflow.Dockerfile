# Airflow 3 with the DAG helpers' requirements (tweepy, httpx, tenacity, SMTP provider).
# Build context: the repository root.
#   docker build -f infra/airflow.Dockerfile -t tweetpulse/airflow .
#
# The slim variant of the official image carries Airflow core only; on top of it goes exactly
# requirements/airflow.lock, the environment `make install` builds in .venv-airflow and the DAG tests run
# in. The full image would add ~80 providers pinned by Airflow's constraints, and installing our lock
# over them would leave a mix nobody has tested. Switch with --build-arg AIRFLOW_IMAGE=... if you need
# providers that are not in the lock (then add them to requirements/airflow.in and re-lock).
#
# Not split into builder/runtime stages like the ModelRunner image: every pin in the lock is a binary
# wheel (nothing is compiled, so there is no toolchain to leave behind), and the official image keeps
# Airflow in the airflow user's site-packages, which a second stage would have to copy whole anyway.
ARG AIRFLOW_IMAGE=apache/airflow:slim-3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The official image runs as the unprivileged `airflow` user and expects pip to run as it.
USER 50000

COPY requirements/airflow.lock /tmp/airflow.lock
# The lock pins apache-airflow==3.3.2 itself, so pip cannot move Airflow away from the base image's
# version; `pip check` fails the build if the lock and the image disagree.
RUN pip install -r /tmp/airflow.lock \
    && pip check \
    && python -c "import airflow.sdk, tweepy, httpx, airflow.providers.smtp"

# DAGs and their helper package are baked in so the image runs on its own (Kubernetes, another host);
# docker-compose.yml additionally mounts ./airflow/dags over this folder so edits show up without a
# rebuild.
COPY --chown=airflow:0 airflow/dags /opt/airflow/dags
# the triggerer imports tweetpulse_dags.triggers by classpath and does not add the DAGs folder itself
ENV PYTHONPATH=/opt/airflow/dags

# The SimpleAuthManager password file lives on its own volume; created here so that the named volume
# mounted over it starts out owned by the airflow user.
COPY --chown=airflow:0 infra/airflow/init.sh /opt/airflow/init.sh
RUN mkdir -p /opt/airflow/auth && chmod 0750 /opt/airflow/auth
