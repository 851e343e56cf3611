"""``/inference`` side by side with a serving system users would pick instead: infinity-emb.

infinity-emb (https://github.com/michaelfeil/infinity) serves the SAME encoder folder the service uses
(``resolve_model`` of the default encoder id) from its own venv, so nothing it pulls in can touch
``.venv``: ``~/.cache/tweetpulse/peer-infinity`` (``TWEETPULSE_PEER_HOME``), created on first use and
reused while its pins match. Two of its engines run: ``torch`` (sentence-transformers on the folder
itself) and ``optimum`` (ONNX Runtime on an ONNX export in a copy of the folder, graph-optimized the way
infinity does it). Every server runs at the same time on 127.0.0.1, on the CPU, and gets the same
load as (d) in ``benchmarks/serving.py``: the same validation tweets, ``CLIENTS`` concurrent clients,
batches of ``BATCH``. Rounds are interleaved (A B C, A B C, ...) so a slow phase of the shared machine
hits every server alike; the median round counts.

The two sides do not compute quite the same thing: infinity returns normalized mean-pooled
embeddings; ``/inference`` also runs the head and softmax and cleans the text first (both small next
to the encoder). Our result cache is off (``TWEETPULSE_INFERENCE_CACHE_SIZE=0``), as infinity has none
by default, so repeated rounds measure computation. Each peer's answers are checked against the
encoder run in this process (cosine of the embeddings): a peer that answers differently is flagged.

If the peer cannot be installed or started, this prints why and still measures ``/inference``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import load_texts, table
from benchmarks.serving import (
    AUTH,
    BATCH,
    CLIENTS,
    N_TEXTS,
    _free_port,
    _http_clients,
    _inference_body,
    running_service,
    wait_ready,
)

PEER = "infinity-emb"
PEER_VERSION = "0.0.78"
# plain `torch` from PyPI is the multi-GB CUDA build; this machine's pip finds the CPU wheel of this pin
TORCH_PIN = "torch==2.13.0"
PEER_SPEC = f"infinity-emb[server,torch,optimum]=={PEER_VERSION}"
ENGINES = ("torch", "optimum")
SERVED_NAME = "minilm"
ROUNDS = 3
CHECK_TEXTS = 16
MIN_COSINE = 0.999  # the same weights on another runtime agree to ~1e-6; lower means another model


def peer_home() -> Path:
    default = Path.home() / ".cache" / "tweetpulse" / "peer-infinity"
    return Path(os.environ.get("TWEETPULSE_PEER_HOME", default)).expanduser()


class PeerUnavailable(RuntimeError):
    """The peer could not be installed, prepared or started; the message says why."""


def peer_command(exe: Path, model_id: str, engine: str, port: int) -> list[str]:
    """The ``infinity_emb v2`` command line of one engine.

    ``--host 127.0.0.1`` always: infinity binds 0.0.0.0 by default, which would expose an unauthenticated
    server on every interface of a shared machine. ``--pooling-method mean``: the optimum engine's
    ``auto`` means CLS pooling, which is not how all-MiniLM-L6-v2 (or the service) pools. ``--device
    cpu``: the service side of this benchmark runs on the CPU as well."""
    return [
        str(exe),
        "v2",
        "--model-id",
        model_id,
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        engine,
        "--device",
        "cpu",
        "--pooling-method",
        "mean",
        "--batch-size",
        str(BATCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _peer_env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        DO_NOT_TRACK="1",  # infinity's anonymous usage statistics (posthog): a benchmark never phones home
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        HF_HUB_OFFLINE="1",  # local folders only
        # where infinity looks for its ORT-optimized graph: beside the peer, not the user's HF cache
        HF_HOME=str(hf_home),
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _run(
    cmd: list[str], log: Path, what: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
    if rc != 0:
        raise PeerUnavailable(f"{what} failed (exit {rc}); last lines of {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 8) -> str:
    if not log.exists():
        return "(no log)"
    text = log.read_text(errors="replace").splitlines()
    return "\n".join("    " + line[:200] for line in text[-lines:])


def ensure_venv(home: Path) -> Path:
    """The peer's own venv (created, or reused while its pins match); returns its bin folder."""
    marker = home / ".tweetpulse-installed"
    pins = f"{TORCH_PIN}\n{PEER_SPEC}\n"
    bin_dir = home / "bin"
    if marker.exists() and marker.read_text() == pins and (bin_dir / "infinity_emb").exists():
        return bin_dir
    home.parent.mkdir(parents=True, exist_ok=True)
    log = home.parent / "peer-infinity-install.log"
    log.write_text("")
    print(f"installing {PEER} {PEER_VERSION} into its own venv {home} (log: {log})", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)  # a venv from the interpreter, not from .venv
    _run([base, "-m", "venv", str(home)], log, "creating the venv")
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, TORCH_PIN], log, f"pip install {TORCH_PIN}")  # first: the CPU wheel, so no CUDA torch
    _run([*pip, PEER_SPEC], log, f"pip install {PEER_SPEC}")
    _run(
        [str(bin_dir / "python"), "-c", "import infinity_emb, optimum.onnxruntime, sentence_transformers"],
        log,
        "importing infinity_emb",
    )
    marker.write_text(pins)
    return bin_dir


# Run in the peer's venv: the optimization infinity's optimum engine would apply at start-up
# (`utils_optimum.optimize_model`: ORTOptimizer, level 99, fp32 on the CPU). infinity 0.0.78 passes
# `optimize_with_onnxruntime_only`, which optimum 2.x no longer accepts, so it would fall back to the
# unoptimized graph; done here with the same settings, infinity finds the result and loads it.
_OPTIMIZE = """
import sys
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer
from optimum.onnxruntime.configuration import OptimizationConfig
src, dst = sys.argv[1], sys.argv[2]
model = ORTModelForFeatureExtraction.from_pretrained(
    src, file_name="model.onnx", provider="CPUExecutionProvider"
)
config = OptimizationConfig(optimization_level=99, optimize_for_gpu=False, fp16=False)
ORTOptimizer.from_pretrained(model).optimize(optimization_config=config, save_dir=dst, one_external_file=True)
"""


def prepare_onnx(bin_dir: Path, encoder: Path, revision: str, home: Path) -> tuple[Path, Path]:
    """A copy of the encoder folder with ``model.onnx`` (for the optimum engine) and the HF home that
    holds infinity's optimized graph; made once per encoder revision."""
    root = home / "models" / revision.replace(":", "-")
    folder, hf_home = root / "encoder", root / "hf"
    # with --model-id "." infinity looks here (HF_HUB_CACHE / infinity_onnx / provider / model id)
    optimized = hf_home / "hub" / "infinity_onnx" / "CPUExecutionProvider"
    if (folder / "model.onnx").exists() and (optimized / "model_optimized.onnx").exists():
        return folder, hf_home
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(encoder, folder)
    log = root / "prepare.log"
    env = _peer_env(hf_home)
    export = root / "onnx-export"
    # --library-name transformers: the plain encoder graph (input_ids, attention_mask, token_type_ids ->
    # last_hidden_state) that infinity's optimum engine reads; the sentence-transformers export would
    # name its outputs token_embeddings / sentence_embedding instead
    _run(
        [
            str(bin_dir / "optimum-cli"),
            "export",
            "onnx",
            "--model",
            str(folder),
            "--task",
            "feature-extraction",
            "--library-name",
            "transformers",
            str(export),
        ],
        log,
        "exporting the encoder to ONNX",
        env=env,
    )
    shutil.copy2(export / "model.onnx", folder / "model.onnx")
    shutil.rmtree(export)
    _run([str(bin_dir / "python"), "-c", _OPTIMIZE, str(folder), str(optimized)], log, "optimizing", env=env)
    return folder, hf_home


@dataclass
class Server:
    name: str
    url: str
    route: str
    body: Callable[[list[str]], dict]
    headers: dict[str, str] | None = None  # None: our service's token; infinity runs without a key
    ours: bool = False


def _embedding_body(chunk: list[str]) -> dict:
    return {"model": SERVED_NAME, "input": chunk}


@contextmanager
def running_peer(bin_dir: Path, engine: str, model_id: str, cwd: Path, hf_home: Path) -> Iterator[str]:
    port = _free_port()
    log = peer_home().parent / f"peer-infinity-{engine}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            peer_command(bin_dir / "infinity_emb", model_id, engine, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_peer_env(hf_home),
            cwd=cwd,
        )
    try:
        try:
            wait_ready(
                f"http://127.0.0.1:{port}/health", process, f"infinity --engine {engine}", timeout_s=240
            )
        except RuntimeError as exc:
            raise PeerUnavailable(f"{exc}; last lines of {log}:\n{_tail(log)}") from exc
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _reference(encoder: Path, texts: list[str]) -> np.ndarray:
    """Normalized mean-pooled embeddings of the encoder in this process: what a peer must return."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModel.from_pretrained(encoder, use_safetensors=True).eval()
    enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def _min_cosine(url: str, texts: list[str], reference: np.ndarray) -> float:
    import httpx

    data = httpx.post(url + "/embeddings", json=_embedding_body(texts), timeout=60).json()["data"]
    got = np.array([row["embedding"] for row in sorted(data, key=lambda r: r["index"])], dtype=np.float32)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    return float((got * reference).sum(axis=1).min())


def _served_runtime(url: str) -> str:
    """What the service chose to serve with (GET /model), for the row's name."""
    import httpx

    try:
        view = httpx.get(url + "/model", params={"task": "sentiment"}, headers=AUTH, timeout=30).json()
        return str(view.get("serving_runtime") or view.get("runtime"))
    except (httpx.HTTPError, ValueError):
        return "runtime unknown"


def run(limit: int | None = None) -> None:
    from benchmarks.quantize import _base_classifier
    from model_runner.encoder.resolve import resolve_model
    from model_runner.settings import Settings

    n = limit or N_TEXTS
    pool = load_texts()
    texts, warm = pool[:n], pool[n : n + CLIENTS * BATCH]  # warm-up texts differ from the measured ones
    resolved = resolve_model(Settings().encoder_id)
    # int8: as deployed (the first is the headline); fp32: like for like with infinity's fp32 engines
    servings = os.environ.get("BENCH_SERVING", "int8,fp32").split(",")
    home = peer_home()
    print(f"encoder {resolved.model_id} ({resolved.revision}) at {resolved.path}", flush=True)

    servers: list[Server] = []
    cosines: dict[str, float] = {}
    unavailable: list[str] = []
    our_env = {"TWEETPULSE_INFERENCE_CACHE_SIZE": "0", "TWEETPULSE_DEVICE": "cpu"}
    with ExitStack() as stack:
        model = _base_classifier(max_length=128)
        for serving in servings:
            # the int8 champion as deployed (serving_runtime auto: measured at load); the fp32 one on
            # the fixed ONNX Runtime twin, the same runtime and precision as infinity's optimum engine
            env = our_env if serving == "int8" else {**our_env, "TWEETPULSE_SERVING_RUNTIME": "onnxruntime"}
            url, _ = stack.enter_context(running_service(model, serving, env))
            name = f"/inference, {serving} champion ({_served_runtime(url)}), result cache off"
            servers.append(Server(name, url, "/inference", _inference_body, None, ours=True))
        try:
            bin_dir = ensure_venv(home)
            folder, hf_home = prepare_onnx(bin_dir, resolved.path, resolved.revision, home)
        except (PeerUnavailable, OSError) as exc:
            unavailable.append(f"{PEER} not available: {exc}")
        else:
            reference = _reference(resolved.path, texts[:CHECK_TEXTS])
            for engine in ENGINES:
                # torch serves the service's own folder; optimum the copy with model.onnx, by "." from
                # inside it: infinity 0.0.78 hands optimum 2.x the ONNX file as an absolute path, and
                # optimum matches bare file names only
                model_id, cwd = (str(resolved.path), home) if engine == "torch" else (".", folder)
                try:
                    peer_url = stack.enter_context(running_peer(bin_dir, engine, model_id, cwd, hf_home))
                    name = f"{PEER} {PEER_VERSION} --engine {engine}"
                    cosines[name] = _min_cosine(peer_url, texts[:CHECK_TEXTS], reference)
                    servers.append(Server(name, peer_url, "/embeddings", _embedding_body, {}))
                except (PeerUnavailable, OSError, KeyError, ValueError) as exc:
                    unavailable.append(f"{PEER} --engine {engine} not measured: {exc}")
        for server in servers:
            _http_clients(server.url, warm, server.route, server.body, server.headers)
        rounds: dict[str, list[float]] = {s.name: [] for s in servers}
        errors = dict.fromkeys(rounds, 0)
        for _ in range(ROUNDS):
            for server in servers:
                rate, failed = _http_clients(server.url, texts, server.route, server.body, server.headers)
                rounds[server.name].append(rate)
                errors[server.name] += failed
    ours = [s.name for s in servers if s.ours]
    _report(texts, ours, rounds, errors, cosines, unavailable)


def _report(
    texts: list[str],
    ours: list[str],
    rounds: dict[str, list[float]],
    errors: dict[str, int],
    cosines: dict[str, float],
    unavailable: list[str],
) -> None:
    median = {name: statistics.median(r) for name, r in rounds.items()}
    # a peer that answers with other embeddings is not the same model: it does not compete
    peers = {n: v for n, v in median.items() if n not in ours and cosines.get(n, 0.0) >= MIN_COSINE}
    best = max(peers, key=peers.get) if peers else None
    rows = [
        (
            name,
            f"{median[name]:.1f}",
            f"{min(r):.1f}-{max(r):.1f}",
            str(errors[name]),
            "-" if name in ours else f"{cosines.get(name, float('nan')):.6f}",
            f"{median[name] / peers[best]:.2f}x" if best else "-",
        )
        for name, r in rounds.items()
    ]
    print(
        f"{len(texts)} validation tweets, {CLIENTS} HTTP clients x {BATCH} texts, median of {ROUNDS}"
        " interleaved rounds, CPU"
    )
    print(table(rows, ("server", "texts/s", "range", "errors", "min cosine vs encoder", "vs peer's best")))
    for line in unavailable:
        print(line)
    if best is None:
        print(f"no {PEER} engine measured: /inference alone, {median[ours[0]]:.1f} texts/s")
        return
    for name in ours:
        print(
            f"{name} / {PEER}'s fastest engine ({best}): "
            f"{median[name]:.1f} / {peers[best]:.1f} = {median[name] / peers[best]:.2f}x"
        )
