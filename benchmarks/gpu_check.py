"""``make gpu-check``: the GPU figures in one go, on a machine with an NVIDIA GPU.

1. torch, CUDA and device facts;
2. the default training on CUDA: ``model-runner train --task sentiment`` (the CLI, in a scratch
   ``TWEETPULSE_HOME`` and Postgres, ``TWEETPULSE_DEVICE=cuda``), wall time and its ``stage_seconds``;
   ``--quick`` trains on a quarter of the rows with 2 folds when the full run does not fit;
3. the champion it registered, loaded with ``load_for_serving(folder, device="cuda")``: our in-process
   serving path (``benchmarks/serving.py`` (c): 32 concurrent requests of 32 texts through the
   micro-batcher) on the validation tweets, and the one-message fp32 loop on the CPU ((a)) for a ratio.

Writes ``OUT.json`` and ``OUT.md`` (rows in the form of docs/benchmarks.md's tables) and prints the
Markdown. Without CUDA it prints the plan and exits 2. Budget: about 8 minutes on an H100 (the
training is bounded by ``--train-timeout``; the serving part takes well under a minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "gpu-check"
NO_CUDA = "no CUDA device: this check runs on a GPU machine"
QUICK_ARGS = ["--sample-fraction", "0.25", "--folds", "2"]
TASK = "sentiment"


def _train_command(data: Path, quick: bool, extra: str = "") -> list[str]:
    cmd = [sys.executable, "-m", "model_runner.cli", "train", "--task", TASK, "--data", str(data)]
    return cmd + (QUICK_ARGS if quick else []) + extra.split()


def _plan(args: argparse.Namespace, data: Path) -> list[str]:
    return [
        "device facts: torch, CUDA, cuDNN, GPU name, memory, bf16 support, nvidia-smi driver",
        f"train on {args.device} (timeout {args.train_timeout} s): TWEETPULSE_DEVICE={args.device} "
        + " ".join(_train_command(data, args.quick, args.train_args)[1:]),
        f"serve the champion on {args.device}: load_for_serving(folder, device='{args.device}'), {args.texts}"
        " validation"
        " tweets through the micro-batcher (32 requests x 32 texts at a time)",
        f"the one-message fp32 loop on the CPU, {args.cpu_texts} tweets, for the ratio",
        f"write {args.out}.json and {args.out}.md",
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def _commit() -> str:
    """The checked-out commit, read from .git without running git (the tree may be a plain copy)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line[:7]
    except OSError:
        pass
    return "not recorded"


def _device_info(device: str) -> dict[str, Any]:
    import torch

    if device == "cpu":  # a rehearsal: no GPU facts to report
        return {
            "torch": torch.__version__,
            "cuda": None,
            "gpu": "no GPU (rehearsal on the CPU)",
            "cpu": _cpu_model(),
        }
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "bf16": torch.cuda.is_bf16_supported(),
        "device_count": torch.cuda.device_count(),
        "cpu": _cpu_model(),
    }
    try:
        smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        info["driver"] = subprocess.run(smi, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["driver"] = None
    return info


def _train(args: argparse.Namespace, home: Path, db_url: str, data: Path, log: Path) -> dict[str, Any]:
    """The CLI's training on ``args.device``; its summary (last stdout line, JSON) plus the wall time."""
    from model_runner.settings import Settings

    settings = Settings(home=home, database_url=db_url)
    env = dict(
        os.environ,
        TWEETPULSE_HOME=str(home),
        DATABASE_URL=db_url,
        TWEETPULSE_DEVICE=args.device,
        TWEETPULSE_MLFLOW_TRACKING_URI=settings.tracking_uri(),
    )
    cmd, timeout_s = _train_command(data, args.quick, args.train_args), args.train_timeout
    start = time.perf_counter()
    with log.open("w") as err:
        # its own session: on timeout the training and the CV workers it spawned end together
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {
                "ok": False,
                "error": f"training passed its {timeout_s} s limit (try --quick)",
                "log": str(log),
            }
    wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").splitlines()[-10:]
        return {"ok": False, "error": f"exit {proc.returncode}", "stderr_tail": tail, "log": str(log)}
    try:
        summary = json.loads(lines[-1])
    except ValueError:
        return {"ok": False, "error": f"last stdout line is not JSON: {lines[-1][:200]}", "log": str(log)}
    result: dict[str, Any] = {"ok": True, "wall_s": round(wall, 1), "summary": summary, "command": cmd[1:]}
    if "stage_seconds" not in summary:
        # the figure this check exists for; say what the CLI should print rather than guess it
        result["missing"] = (
            "the CLI summary has no stage_seconds (keys: "
            + ", ".join(sorted(summary))
            + "); TrainOutcome.summary() should add stage_seconds (seconds per stage)"
        )
    return result


def _champion_folder(home: Path, db_url: str, version: str | None, dst: Path) -> Path:
    from model_runner.settings import Settings
    from model_runner.wiring import Components

    registry = Components(Settings(home=home, database_url=db_url)).registry
    info = registry.champion(TASK)
    if info is None and version is not None:  # trained but not promoted: still the model to time
        info = next((v for v in registry.versions(TASK) if str(v.version) == str(version)), None)
    if info is None:
        raise RuntimeError("the training registered no version to serve")
    return registry.download_verified(TASK, info, dst=dst)


def _load(folder: Path, device: str) -> tuple[Any, str]:
    """The model as served on ``device``. ``load_for_serving`` is being extended (runtime choice): accept
    a bare model or a (model, choice) pair, and fall back to the fp32 model if its signature moved."""
    from model_runner.modeling.classifier import TweetClassifier

    try:
        from model_runner.modeling.serving import load_for_serving

        result = load_for_serving(folder, device=device)
    except (ImportError, TypeError) as exc:
        return TweetClassifier.load(folder, device=device), f"TweetClassifier.load on {device} ({exc})"
    if isinstance(result, tuple):
        model, choice = result[0], result[1]
        runtime = getattr(choice, "runtime", None) or getattr(choice, "chosen", None) or repr(choice)[:80]
        return model, f"load_for_serving(device='{device}'): {runtime}"
    return result, f"load_for_serving(device='{device}')"


def _serving(folder: Path, device: str, texts: list[str], cpu_texts: list[str]) -> dict[str, Any]:
    import torch

    from benchmarks.serving import _in_process, _naive_fp32
    from model_runner.modeling.classifier import TweetClassifier

    # the CPU loop first, as in serving.py: a pool thread that has run torch slows single passes after
    cpu_model = TweetClassifier.load(folder, device="cpu")
    torch.manual_seed(0)
    naive = _naive_fp32(cpu_model, cpu_texts)
    del cpu_model
    model, how = _load(folder, device)
    cuda = device == "cuda"
    try:
        from model_runner.service.served import ServedModel

        quantized = "Quantized" in type(model).__name__
        served = ServedModel(TASK, "gpu-check", "1", model, quantized, {}, None, "gpu-check")
        _in_process(served, texts[:256])  # warm-up: CUDA context, kernels, allocator
        if cuda:
            torch.cuda.synchronize()
        cuda_rate = _in_process(served, texts)
        path = "in-process micro-batcher (serving.py (c))"
    except (ImportError, TypeError) as exc:  # the batcher's wiring moved: time predict_proba instead
        model.predict_proba(texts[:256], batch_size=32)
        start = time.perf_counter()
        model.predict_proba(texts, batch_size=32)
        cuda_rate = len(texts) / (time.perf_counter() - start)
        path = f"predict_proba in batches of 32 ({exc})"
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return {
        "loaded_with": how,
        "path": path,
        "device": device,
        "device_texts_per_s": round(cuda_rate, 1),
        "cpu_one_at_a_time_fp32_texts_per_s": round(naive, 1),
        "ratio": round(cuda_rate / naive, 2),
        "cuda_peak_mib": round(peak) if cuda else None,
        "texts": len(texts),
        "cpu_texts": len(cpu_texts),
        "cpu_threads": torch.get_num_threads(),
    }


def _args_line(args: argparse.Namespace) -> str:
    """The options that change the figures, for the rows' command column."""
    parts = ["--quick"] if args.quick else []
    parts += [f"--train-args '{args.train_args}'"] if args.train_args else []
    parts += ["--device cpu"] if args.device == "cpu" else []
    return " ".join(parts)


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, command) rows, as docs/benchmarks.md's tables have them."""
    info, on = report["device"], report["device_kind"]
    cmd = "`make gpu-check" + (f' ARGS="{report["args"]}"`' if report["args"] else "`")
    rows: list[tuple[str, str, str]] = []
    if on == "cuda":
        rows.append(
            (
                "GPU and stack",
                f"{info['gpu']} ({info['gpu_memory_gib']} GiB, sm {info['capability']}, bf16 {info['bf16']}),"
                f" driver {info['driver'] or 'unknown'}, torch {info['torch']}, CUDA {info['cuda']}",
                cmd,
            )
        )
    train = report["training"]
    label = f"default `train --task {TASK}` on {on}" + (
        " (quick: 1/4 of the rows, 2 folds)" if report["quick"] else ""
    )
    if train.get("ok"):
        s = train["summary"]
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in (s.get("stage_seconds") or {}).items())
        metric = next((k for k in ("macro_recall", "macro_f1") if k in s), None)
        value = f"{train['wall_s'] / 60:.1f} min wall ({stages or train.get('missing', '')})"
        value += f"; {s.get('best_candidate')} chosen; {metric} {s.get(metric)}; serving {s.get('serving')}"
        rows.append((label, value, cmd))
    else:
        rows.append((label, f"failed: {train.get('error')}", cmd))
    serve = report.get("serving") or {}
    figure = f"champion served on {on}, in process (32 requests x 32 texts), vs the one-message fp32 CPU loop"
    if "error" in serve:
        rows.append((figure, f"failed: {serve['error']}", cmd))
    elif serve:
        peak = f"; CUDA peak {serve['cuda_peak_mib']} MiB" if serve["cuda_peak_mib"] is not None else ""
        rows.append(
            (
                figure,
                f"{serve['device_texts_per_s']} vs {serve['cpu_one_at_a_time_fp32_texts_per_s']} texts/s"
                f" ({serve['ratio']}x); {serve['loaded_with']}{peak}",
                cmd,
            )
        )
    return rows


def _markdown(report: dict[str, Any]) -> str:
    cpu = report["device"]["cpu"] + (
        f" + {report['device']['gpu']}" if report["device_kind"] == "cuda" else ""
    )
    lines = ["| figure | value | command | date | commit | CPU |", "| --- | --- | --- | --- | --- | --- |"]
    for figure, value, command in _rows(report):
        lines.append(f"| {figure} | {value} | {command} | {report['date']} | `{report['commit']}` | {cpu} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import SHARED

    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="writes OUT.json and OUT.md")
    parser.add_argument("--quick", action="store_true", help="train on 1/4 of the rows with 2 folds")
    parser.add_argument("--train-timeout", type=int, default=420, help="seconds (default 420)")
    parser.add_argument(
        "--train-args", default="", help="more `model-runner train` options, e.g. '--adapters linear'"
    )
    parser.add_argument("--texts", type=int, default=1000, help="validation tweets served on the device")
    parser.add_argument("--cpu-texts", type=int, default=300, help="tweets through the CPU fp32 loop")
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu: rehearse every step on a machine without a GPU (CPU figures, labelled so)",
    )
    args = parser.parse_args(argv)
    out = args.out.with_suffix("") if args.out.suffix in (".json", ".md") else args.out
    args.out = out
    data = (SHARED / f"tweet-{TASK}").resolve()

    print("gpu-check will run:", *(f"  {i}. {step}" for i, step in enumerate(_plan(args, data), 1)), sep="\n")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2

    from benchmarks.common import load_texts, scratch_database

    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "commit": _commit(),
        "device_kind": args.device,
        "quick": args.quick,
        "args": _args_line(args),
        "device": _device_info(args.device),
    }
    print(json.dumps(report["device"]), flush=True)
    pool = load_texts()
    texts, cpu_texts = pool[: args.texts], pool[: args.cpu_texts]
    with scratch_database() as db_url, tempfile.TemporaryDirectory(prefix="tp-gpu-check-") as tmp:
        home = Path(tmp) / "home"
        print(f"training on {args.device} (log: {out}.train.log) ...", flush=True)
        report["training"] = _train(args, home, db_url, data, Path(f"{out}.train.log"))
        print(json.dumps(report["training"]), flush=True)
        try:
            version = (report["training"].get("summary") or {}).get("model_version")
            folder = _champion_folder(home, db_url, version, Path(tmp) / "champion")
            report["serving"] = _serving(folder, args.device, texts, cpu_texts)
        except Exception as exc:  # a failed part is a row that says so, never a missing report
            report["serving"] = {"error": f"{type(exc).__name__}: {exc}"}
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    Path(f"{out}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {out}.json and {out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
