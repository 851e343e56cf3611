"""The few Airflow 3 REST API calls the stack needs (``/auth/token`` + ``/api/v2``)."""

from __future__ import annotations

import time

import httpx


class AirflowAPI:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self._credentials = {"username": username, "password": password}
        self._client = httpx.Client(base_url=base_url, timeout=30)

    def _auth(self) -> None:
        r = self._client.post("/auth/token", json=self._credentials)
        r.raise_for_status()
        self._client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def token(self) -> str:
        """The JWT this client uses (the UI accepts the same one as its ``_token`` cookie)."""
        if "Authorization" not in self._client.headers:
            self._auth()
        return self._client.headers["Authorization"].split(" ", 1)[1]

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        if "Authorization" not in self._client.headers:
            self._auth()
        r = self._client.request(method, path, **kwargs)
        if r.status_code == 401:  # the token expired: log in again once
            self._auth()
            r = self._client.request(method, path, **kwargs)
        return r

    def wait_for_dags(self, dag_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            missing = [d for d in dag_ids if self.request("GET", f"/api/v2/dags/{d}").status_code != 200]
            if not missing:
                return
            time.sleep(2)
        errors = self.request("GET", "/api/v2/importErrors").json()
        raise RuntimeError(f"DAGs {missing} did not appear within {timeout:.0f}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def pause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        r = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        r.raise_for_status()
        return r.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        r = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        r.raise_for_status()
        return r.json()["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        r = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        r.raise_for_status()
        return r.json()["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        r = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        r.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in r.json()["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        r = self.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        r.raise_for_status()
        return r.json().get("value")
