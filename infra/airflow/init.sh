#!/usr/bin/env bash
# One-shot initialisation run by the `airflow-init` service before any other Airflow component starts:
# migrate the metadata database and give the admin user its password. Safe to run on every `up`.
set -euo pipefail

: "${AIRFLOW_ADMIN_USER:?set AIRFLOW_ADMIN_USER}"
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the compose file sets it}"

airflow db migrate

# SimpleAuthManager keeps passwords in a JSON file ({"user": "password"}); with the user present it
# never generates (and logs) a random one. Written atomically, readable by the airflow user only.
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
tmp = path.with_suffix(".tmp")
tmp.write_text(json.dumps({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
tmp.chmod(0o600)
tmp.replace(path)
PY

echo "airflow-init: database migrated, user '${AIRFLOW_ADMIN_USER}' configured"
