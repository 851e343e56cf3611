"""``model-runner export``: a registered version as the portable folder the Hub push uploads.

The folder (``modeling/export.py``) loads without tweetpulse: ``model.onnx`` (the whole model to logits),
``tokenizer.json`` with the tweet cleaning in its normalizer, ``config.json`` with ``id2label``, the card
(README.md) and, under ``tweetpulse/``, the native model folder byte for byte. It is exactly what
``jobs/publish.py`` pushes to the Hub (which re-renders README.md with the repo id).

Which version: the champion by default (refused unless it passed the gate and its files are the
registered ones, as for serving); an explicit ``version`` need not be the champion, but its files must
still match the manifest digest recorded at registration.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.jobs.publish import hub_repo_for
from model_runner.settings import Settings
from model_runner.wiring import Components

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    task: str
    version: str  # the registry version that was exported
    output: Path  # the export folder
    files: list[str] = field(default_factory=list)  # paths relative to ``output``
    card_repo: str = ""  # what the card's "how to use" loads: the Hub repo when configured, else ``output``


def _card_info(components: Components, task: str, info, config: dict, repo: str) -> dict:
    from model_runner.tasks import get_task

    registry = components.registry
    metrics: dict = {}
    if info.run_id:
        try:
            metrics = registry.run_metrics(info.run_id)
            # the run's report.json has what MLflow metrics cannot hold: the bootstrap CIs (lists)
            metrics.update(_report_metrics(components, info.run_id))
        except Exception as exc:  # the card says less; the export still happens
            log.warning("metrics of %s version %s unknown (%s)", task, info.version, type(exc).__name__)
    try:
        metric = get_task(task, components.settings).metric
    except Exception:  # a task no longer configured: no "primary" marker in the card
        metric = None
    return {
        "task": task,
        "model_name": registry.model_name(task),
        "version": str(info.version),
        "labels": config["labels"],
        "metric": metric,
        "metrics": metrics,
        "data": {},
        "base_model": config.get("base_model"),
        "adapter": config.get("adapter"),
        "hyperparameters": config.get("hyperparameters"),
        "warmup": config.get("warmup"),
        "teacher": config.get("teacher"),
        "serving": config.get("serving"),
        "mlflow_run_id": info.run_id,
        "max_length": config.get("max_length"),
        "repo_id": repo,
    }


def _report_metrics(components: Components, run_id: str) -> dict:
    """The ``*_ci`` intervals of the run's evaluation report (``evaluation/report.json``)."""
    with tempfile.TemporaryDirectory(prefix="tp-report-") as tmp:
        path = components.mlflow.download_artifacts(run_id, "evaluation/report.json", tmp)
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: v for k, v in report.items() if k.endswith("_ci") and isinstance(v, list) and len(v) == 2}


def export_model(settings: Settings, task: str, version: str | None, output: Path) -> ExportResult:
    """Write the portable export of ``task``'s ``version`` (None: the champion) to ``output``.

    ``output`` must not exist or be empty (``FileExistsError``). Raises ``NoChampionError`` when there
    is no champion, ``ModelNotFoundError`` for an unknown version, ``UntrustedVersionError`` when the
    files are not the registered ones and ``ValueError`` when the export does not reproduce the model.
    """
    from model_runner.hub.card import render_model_card
    from model_runner.modeling.classifier import CONFIG_FILE, verify_files
    from model_runner.modeling.export import build_export
    from model_runner.registry.integrity import check_folder
    from model_runner.registry.mlflow_registry import ModelNotFoundError

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"{output} exists and is not an empty folder")
    components = Components(settings)
    registry = components.registry
    work = Path(tempfile.mkdtemp(prefix="tp-export-"))
    try:
        if version is None:
            info = registry.champion(task)
            if info is None:
                raise NoChampionError(
                    f"no champion for task {task!r} in {registry.model_name(task)}; "
                    f"run `model-runner train --task {task}` first or pass --version"
                )
            folder = registry.download_verified(task, info, dst=work)
        else:
            info = next((v for v in registry.versions(task, limit=10_000) if v.version == str(version)), None)
            if info is None:
                raise ModelNotFoundError(f"{registry.model_name(task)} has no version {version}")
            folder = registry.download(task, version=info.version, alias=None, dst=work)
            check_folder(folder, info.tags, f"{info.name}/{info.version}")
        verify_files(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        repo = hub_repo_for(settings, task) or str(output.resolve())
        card = render_model_card(_card_info(components, task, info, config, repo))
        build_export(folder, output, card=card, version=str(info.version))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    log.info("exported %s version %s to %s", task, info.version, output)
    return ExportResult(task=task, version=str(info.version), output=output, files=files, card_repo=repo)
