"""Settings of the local (no-Docker) stack: where it keeps its state and which loopback ports it uses.

The ModelRunner's own settings stay in ``model_runner/settings.py``; this class only adds what the
stack launcher needs (prefix ``TWEETPULSE_STACK_``), and reads ``TWEETPULSE_HOME``/``TWEETPULSE_PORT``
so both agree.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[2]


class StackConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWEETPULSE_STACK_", extra="ignore")

    home: Path = Field(
        default=Path(".tweetpulse"), validation_alias=AliasChoices("TWEETPULSE_HOME", "TWEETPULSE_STACK_HOME")
    )
    runner_port: int = Field(default=8000, validation_alias=AliasChoices("TWEETPULSE_PORT"))
    mlflow_port: int = 5000
    airflow_port: int = 8080
    smtp_port: int = 1025
    start_timeout_s: float = 180.0
    retrain_timeout_s: float = 3600.0
    # The demo's retrain uses the heads on cached embeddings so that a fresh clone ends within 30 min
    # on 2 cores; the full default (LoRA included) takes about 30 min inside the running stack.
    demo_adapters: str = "linear,mlp"
    demo_conf: str = Field(default="", description="JSON conf of the demo's weekly_retrain run.")

    def demo_params(self) -> dict:
        if self.demo_conf.strip():
            return json.loads(self.demo_conf)
        return {"adapters": [a.strip() for a in self.demo_adapters.split(",") if a.strip()]}

    @property
    def root(self) -> Path:
        return (self.home if self.home.is_absolute() else REPO / self.home).resolve()

    @property
    def run_dir(self) -> Path:
        return self.root / "stack"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    def secrets(self) -> dict[str, str]:
        """Generated once per stack home, kept 0600 beside the pid files, never printed except the login."""
        path = self.run_dir / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        values = {
            "api_token": secrets.token_urlsafe(32),
            "airflow_password": secrets.token_urlsafe(12),
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(32),
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(values, indent=2))
        return values
