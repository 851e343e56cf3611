"""``model-runner``: the command line of the ModelRunner."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.settings import get_settings
from model_runner.tasks import Task, declared_tasks, get_task, parse_label_map
from model_runner.wiring import Components


def _task(args: argparse.Namespace, settings) -> Task:
    """The named (or first declared) task, read as this command's data options say."""
    task = get_task(args.task, settings) if args.task else next(iter(declared_tasks(settings).values()))
    return task.with_data_options(
        label_map=parse_label_map(getattr(args, "label_map", None)),
        text_column=getattr(args, "text_column", None),
        label_column=getattr(args, "label_column", None),
    )


def _cmd_embed(args: argparse.Namespace) -> int:
    # lazy: `model-runner --help` and the database-only commands must not load torch, mlflow or datasets
    from model_runner.jobs.embed import embed_dataset

    settings = get_settings()
    report = embed_dataset(Components(settings), _task(args, settings), args.data)
    print(
        f"embedded {report.texts} texts in {report.seconds:.1f}s: {report.computed} computed, "
        f"{report.cached} from the cache ({report.new_examples} new labelled examples)",
        file=sys.stderr,
    )
    print(json.dumps(report.to_dict()))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from model_runner.training.progress_bar import training_progress
    from model_runner.training.run import run_training

    settings = get_settings()
    adapters = args.adapters.split(",") if args.adapters else None
    with training_progress() as progress:  # a bar on a terminal, plain lines in a log
        outcome = run_training(
            Components(settings),
            _task(args, settings),
            data=args.data,
            adapters=adapters,
            folds=args.folds,
            sample_fraction=args.sample_fraction,
            progress=progress,
        )
    for row in outcome.cv:
        print(
            f"  cv {row['candidate']:<60} {outcome.metric} {row[outcome.metric + '_mean']:.4f}"
            f" +- {row[outcome.metric + '_std']:.4f}  ({row['seconds']:.0f}s)",
            file=sys.stderr,
        )
    print(
        f"trained in {outcome.seconds / 60:.1f} min ({outcome.stage_seconds}); "
        f"version {outcome.model_version} {'promoted' if outcome.promoted else 'not promoted'}: "
        f"{outcome.gate['reason']}",
        file=sys.stderr,
    )
    print(json.dumps(outcome.summary()))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from model_runner.jobs.champion import load_champion
    from model_runner.jobs.predict import evaluate_data

    settings = get_settings()
    task = _task(args, settings)
    loaded = load_champion(settings, task.name)
    print(json.dumps(evaluate_data(loaded, task, args.data)))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from model_runner.jobs.champion import load_champion
    from model_runner.jobs.predict import predict_file

    # the model as /inference serves it: same runtime (ONNX Runtime or torch), same int8 choice
    settings = get_settings()
    loaded = load_champion(settings, _task(args, settings).name)
    n = predict_file(loaded, Path(args.input), Path(args.output))
    how = f" ({loaded.choice.precision}, {loaded.choice.runtime})" if loaded.choice else ""
    print(f"wrote {n} predictions of {loaded.version.uri}{how} to {args.output}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from model_runner.hub.card import usage_code
    from model_runner.jobs.export import export_model

    settings = get_settings()
    result = export_model(settings, _task(args, settings).name, args.version, Path(args.output))
    print(
        f"exported {result.task} version {result.version} to {result.output} ({len(result.files)} files);"
        f" load it without tweetpulse (pip install -r requirements/outside-client.txt):\n"
        f"{usage_code(result.card_repo)}",
        file=sys.stderr,
    )
    print(json.dumps({**asdict(result), "output": str(result.output)}))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from model_runner.service.app import create_app
    from model_runner.service.server import run

    settings = get_settings()
    if args.role:
        settings = settings.model_copy(update={"role": args.role})
    host, port = args.host or settings.host, args.port or settings.port
    # one worker: the models and micro-batchers live in this process; scale with replicas instead
    run(create_app(settings), settings, host=host, port=port)
    return 0


def _cmd_label_import(args: argparse.Namespace) -> int:
    from model_runner.tweets.label_files import read_label_file
    from model_runner.tweets.review import import_labels

    settings = get_settings()
    task = _task(args, settings)
    items = read_label_file(Path(args.file), task.label_map)
    result = import_labels(Components(settings).db, task.name, items, allowed_labels=task.labels or None)
    print(
        f"{result.added} new feedback labels for {task.name}, {result.duplicates} already known,"
        f" {len(result.unknown_tweets)} unknown tweet ids;"
        f" {result.removed_from_review} left the review queue",
        file=sys.stderr,
    )
    print(json.dumps(asdict(result)))
    return 0


def _cmd_label_export(args: argparse.Namespace) -> int:
    from model_runner.tweets.review import list_review

    settings = get_settings()
    task = _task(args, settings)
    total, items = list_review(Components(settings).db, task.name, limit=args.limit)
    with open(args.file, "w", encoding="utf-8") as handle:
        for item in items:
            row = {
                "tweet_id": str(item.tweet_id),
                "text": item.text,
                "predicted_label": item.predicted_label,
                "top_score": round(item.top_score, 4),
                "label": "",  # for the reviewer to fill in, then `model-runner label import`
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} of {total} queued tweets to {args.file}", file=sys.stderr)
    return 0


def _add_task(parser: argparse.ArgumentParser, *, data_options: bool = False) -> None:
    parser.add_argument("--task", help="a task declared in the tasks file (default: the first declared)")
    if data_options:
        parser.add_argument(
            "--label-map",
            help="raw label -> class, e.g. 0=negative,2=neutral,4=positive (integer labels need one)",
        )
        parser.add_argument("--text-column", help="field or CSV column holding the text (default: text)")
        parser.add_argument("--label-column", help="field or CSV column holding the label (default: label)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-runner", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed a dataset into the pgvector cache")
    embed.add_argument("--data", help="file, folder or Hub dataset id (default: the task's data)")
    _add_task(embed, data_options=True)
    embed.set_defaults(func=_cmd_embed)

    train = sub.add_parser("train", help="cross-validate adapters, train the best, gate and register it")
    train.add_argument("--data", help="file, folder or Hub dataset id (default: the task's data)")
    train.add_argument("--adapters", help="comma-separated subset of linear,mlp,lora,finetune,distill")
    train.add_argument("--folds", type=int, help="stratified CV folds")
    train.add_argument("--sample-fraction", type=float, help="train on a stratified sample (quick runs)")
    _add_task(train, data_options=True)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="metrics of the champion on labelled data")
    evaluate.add_argument("--data", required=True)
    _add_task(evaluate, data_options=True)
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = sub.add_parser("predict", help="label a .txt or .jsonl file with the champion")
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    _add_task(predict)
    predict.set_defaults(func=_cmd_predict)

    label = sub.add_parser("label", help="the review queue and labelled feedback")
    label_sub = label.add_subparsers(dest="label_command", required=True)
    label_import = label_sub.add_parser(
        "import", help="add labelled rows (JSON Lines or CSV: label + text or tweet_id) as feedback"
    )
    label_import.add_argument("file")
    _add_task(label_import)
    label_import.add_argument(
        "--label-map", help="raw label -> class for this file, e.g. 0=negative,1=positive"
    )
    label_import.set_defaults(func=_cmd_label_import)
    label_export = label_sub.add_parser("export", help="write the review queue as JSON Lines to label")
    label_export.add_argument("file")
    _add_task(label_export)
    label_export.add_argument("--limit", type=int, default=500)
    label_export.set_defaults(func=_cmd_label_export)

    export = sub.add_parser(
        "export",
        help="write a registered model as a portable folder (ONNX + tokenizer + config with id2label) that"
        " optimum and transformers load without tweetpulse",
    )
    _add_task(export)
    export.add_argument("--version", help="registered version (default: the champion)")
    export.add_argument(
        "--output", required=True, help="folder to write (created; must be empty if it exists)"
    )
    export.set_defaults(func=_cmd_export)

    serve = sub.add_parser("serve", help="start the HTTP service (uvicorn)")
    serve.add_argument("--host", help="bind address (default: TWEETPULSE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: TWEETPULSE_PORT or 8000)")
    serve.add_argument(
        "--role",
        choices=["all", "serve", "train"],
        help="all: serve and train (one machine); serve: answer requests, queue training jobs;"
        " train: claim queued jobs and run them (default: TWEETPULSE_ROLE or all)",
    )
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from model_runner.data import DataError

    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError, FileExistsError, NoChampionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
