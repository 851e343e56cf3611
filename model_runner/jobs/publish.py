"""After a promotion: push the champion to the Hugging Face Hub (when configured) and say so in MLflow.

What is pushed is the portable export (``modeling/export.py``: ONNX + tokenizer with the cleaning + card
at the repo root, the native folder under ``tweetpulse/``), the same folder ``model-runner export``
writes (``jobs/export.py``)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from model_runner.settings import Settings
from model_runner.wiring import Components

log = logging.getLogger(__name__)


def hub_repo_for(settings: Settings, task: str) -> str | None:
    if not settings.hub_repo_id or settings.hub_token is None:
        return None
    return settings.hub_repo_id.format(task=task)


def card_info(outcome, name: str, labels: list[str], meta: dict) -> dict:
    return {
        "task": outcome.task,
        "model_name": name,
        "version": outcome.model_version,
        "labels": labels,
        "metric": outcome.metric,
        "metrics": outcome.metrics,
        "data": outcome.data,
        "base_model": meta.get("base_model"),
        "adapter": meta.get("adapter"),
        "hyperparameters": meta.get("hyperparameters"),
        "warmup": meta.get("warmup"),
        "teacher": meta.get("teacher"),
        "serving": outcome.quantization.get("chosen"),
        "mlflow_run_id": outcome.run_id,
        "max_length": meta.get("max_length"),
    }


def publish_to_hub(components: Components, outcome) -> dict:
    """Returns what the job records; never raises for a Hub problem (the promotion stands)."""
    settings = components.settings
    repo_id = hub_repo_for(settings, outcome.task)
    if repo_id is None:
        return {"pushed": False, "reason": "no Hub token and repo configured"}
    # lazy: the service imports this module at start-up; these load torch and huggingface_hub
    from model_runner.hub.push import HubPushError, push_model
    from model_runner.modeling.classifier import CONFIG_FILE

    registry = components.registry
    tmp = Path(tempfile.mkdtemp(prefix="tp-hub-"))
    try:
        folder = registry.download(outcome.task, version=outcome.model_version, alias=None, dst=tmp)
        # the card needs the labels and adapter config only: read them, do not load the weights
        config = json.loads((folder / CONFIG_FILE).read_text())
        info = card_info(outcome, registry.model_name(outcome.task), config["labels"], config)
        result = push_model(
            folder,
            repo_id=repo_id,
            token=settings.hub_token.get_secret_value(),
            card_info=info,
            endpoint=settings.hub_endpoint,
            private=settings.hub_private,
            timeout_s=settings.hub_timeout_s,
            retries=settings.hub_retries,
            commit_message=f"{info['model_name']} version {outcome.model_version}",
        )
    except HubPushError as exc:
        log.error("Hub push of %s failed: %s", repo_id, exc)
        return {"pushed": False, "repo_id": repo_id, "error": str(exc)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tags = {"hub.repo_id": result.repo_id, "hub.commit_id": result.commit_id}
    registry.set_tags(outcome.task, outcome.model_version, tags)
    for key, value in tags.items():
        components.mlflow.set_tag(outcome.run_id, key, value)
    log.info(
        "pushed %s version %s to %s at %s", outcome.task, outcome.model_version, repo_id, result.commit_id
    )
    return {
        "pushed": True,
        "repo_id": result.repo_id,
        "commit_id": result.commit_id,
        "url": result.commit_url,
    }
