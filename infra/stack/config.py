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


def _split(names: str) -> list[str]:
    return [a.strip() for a in names.split(",") if a.strip()]


class StackConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWEETPULSE_STACK_", extra="ignore")

    home: Path = Field(
        default=Path(".tweetpulse"), validation_alias=AliasChoices("TWEETPULSE_HOME", "TWEETPULSE_STACK_HOME")
    )
    runner_port: int = Field(default=8000, validation_alias=AliasChoices("TWEETPULSE_PORT"))
    replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="ModelRunner serving replicas: 1 = one process that serves and trains (role all);"
        " N > 1 = N `serve` replicas and one `train` process behind HAProxy on TWEETPULSE_PORT.",
    )
    mlflow_port: int = 5000
    airflow_port: int = 8080
    smtp_port: int = 1025
    start_timeout_s: float = 180.0
    retrain_timeout_s: float = 3600.0
    # The demo's quick retrain cross-validates heads on the frozen encoder's cached embeddings so that a
    # fresh clone ends within 30 min on 2 cores (install included); the full default also fine-tunes
    # the encoder, which takes longer inside the running stack: `make demo TWEETPULSE_DEMO_FULL=1`.
    demo_adapters: str = "linear,mlp"
    demo_full: bool = Field(
        default=False,
        validation_alias=AliasChoices("TWEETPULSE_DEMO_FULL", "TWEETPULSE_STACK_DEMO_FULL"),
        description="Train the full default model (the teacher, then the distilled student) instead of the"
        " quick heads.",
    )
    # The ModelRunner's default TWEETPULSE_ADAPTERS (model_runner/settings.py; a test keeps them equal).
    full_adapters: str = "linear,mlp,finetune,distill"
    # Held-out macro recall (validation.jsonl) of the full default on 2 CPU cores, quoted by the summary.
    full_macro_recall: float = 0.66
    demo_conf: str = Field(default="", description="JSON conf of the demo's weekly_retrain run.")
    # The demo's tweet_inspector run sends the daily digest at once, so a mail reaches the mailbox.
    demo_inspector_conf: str = Field(default='{"digest": "now"}', description="JSON conf of its run.")

    def demo_params(self) -> dict:
        if self.demo_conf.strip():
            return json.loads(self.demo_conf)
        return {"adapters": self.full_adapter_list() if self.demo_full else _split(self.demo_adapters)}

    def full_adapter_list(self) -> list[str]:
        return _split(self.full_adapters)

    def inspector_params(self) -> dict:
        return json.loads(self.demo_inspector_conf) if self.demo_inspector_conf.strip() else {}

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
