"""Candidate serving runtimes of one model, measured at load: the fastest one within the accuracy gate serves.

Which runtime is fastest depends on the CPU (AVX2 only, AVX512-BF16, AMX), the thread count, the
encoder's size and the text lengths, so nothing here is hard-coded: ``choose_runtime`` builds every
candidate this machine supports, makes each answer the model's probe texts (its own held-out
evaluation texts from ``probe.json``, then ``CANARY_TEXTS``; older folders: the canaries only), and
keeps only those within the gate:

* label agreement with fp32 torch ``>= min_agreement`` and, when the probe has labels, metric drop
  ``<= max_drop`` (the same gate as training's int8 check, ``quantize.gate_failures``);
* fp32 runtimes (ONNX Runtime fp32) must also match torch within float noise on the canaries
  (``ONNX_MAX_DIFF``): a traced graph that differs is a bug, not a precision trade-off.

Then the survivors' batched throughput is timed the way the service runs it (``predict_proba`` in
passes of 32 over 64 probe texts, after a warm-up, round-robin, best of up to three rounds) and the
fastest serves; a reduced-precision one only when it beats the fastest fp32 one by 5%. Survivors
stay in memory until the timing ends (a few encoder copies for a few seconds, on the reload thread).
A forced runtime (``serving_runtime="torch-int8"`` ...) is checked by the same gate; when it fails,
fp32 torch serves and a warning says why.

Candidates: ``torch`` (fp32, the reference), ``onnxruntime`` (fp32 twin), ``torch-int8`` (dynamic
per-channel; when every layer int8 misses the gate, mixed precision keeps the most sensitive Linear
layers fp32: ``quantize.search_mixed_int8``), ``onnxruntime-int8`` (dynamic and static QDQ calibrated
on the probe texts, per channel, weight MatMuls only, static with the FFN down projections fp32; the
one that agrees better, retried with torch's fp32 layers when it misses), ``torch-bf16`` (autocast,
only where the CPU has AVX512-BF16 or AMX: elsewhere bf16 is emulated and slow), ``cuda`` (on a GPU:
the model on the GPU under bf16 or fp16 autocast).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.quantize import FP32_LAYERS_KEY, gate_failures, quantize_int8, search_mixed_int8

log = logging.getLogger(__name__)

AUTO = "auto"
TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
TORCH_INT8 = "torch-int8"
ONNXRUNTIME_INT8 = "onnxruntime-int8"
TORCH_BF16 = "torch-bf16"
CUDA = "cuda"
CANDIDATES = (TORCH, ONNXRUNTIME, TORCH_INT8, ONNXRUNTIME_INT8, TORCH_BF16, CUDA)

# Largest probability difference between an fp32 runtime and torch that is float noise.
ONNX_MAX_DIFF = 1e-3

# Fixed texts every candidate must answer sensibly (the service), and fp32 twins like torch.
CANARY_TEXTS = (
    "I love this, best update ever!",
    "This is the worst service I have ever used.",
    "The meeting is at 3pm on Tuesday.",
    "",
    "@user check http://example.com " + "long " * 200,
)

# Timing: passes as the service runs them (``batch_pass_size`` 32) over at most this many probe texts,
# round-robin over the candidates within the gate, best of ``TIMING_REPEATS`` rounds, fewer once
# ``TIMING_BUDGET_S`` per candidate is spent (a large encoder on a slow CPU).
TIMING_BATCH = 32
TIMING_TEXTS = 64
TIMING_REPEATS = 3
TIMING_BUDGET_S = 0.5
# A reduced-precision runtime (int8, bf16, fp16) serves only when it beats the fastest fp32 one by
# more than this factor: within timing noise on a shared CPU, exact answers are worth more.
REDUCED_PRECISION_MARGIN = 1.05
# Static int8 calibrates its activation ranges on at most this many probe texts.
CALIBRATION_TEXTS = 64

Measure = Callable[[str, TweetClassifier, Sequence[str]], float]


@dataclass(frozen=True)
class CanaryCheck:
    """How the ONNX Runtime twin answered ``CANARY_TEXTS`` compared with torch."""

    passed: bool
    max_diff: float | None  # largest probability difference; None when the export itself failed
    detail: str  # what happened, as logged when the twin was dropped


@dataclass(frozen=True)
class Gate:
    """The accuracy a candidate must keep against fp32 torch (the settings ``quant_*``)."""

    min_agreement: float = 0.97
    max_drop: float = 0.01
    max_canary_diff: float = ONNX_MAX_DIFF  # fp32 runtimes only


@dataclass(frozen=True)
class CandidateResult:
    """One candidate as measured: accepted or why not, its agreement and speed."""

    name: str  # one of CANDIDATES (or a test's own)
    engine: str  # "torch" or "onnxruntime": what runs the forward pass
    precision: str  # "fp32", "int8", "bf16" or "fp16"
    accepted: bool  # within the gate
    reason: str  # why it was dropped, or "" when accepted
    texts_per_s: float | None = None  # measured for accepted candidates only (None: not timed)
    agreement: float | None = None  # label agreement with fp32 torch on the probe texts
    score_drop: float | None = None  # metric drop on the labelled probe texts; None: no labels
    canary_diff: float | None = None  # largest probability difference on the canaries
    method: str | None = None  # e.g. "dynamic", "static-qdq", "dynamic, 3 layers fp32"
    fp32_layers: tuple[str, ...] = ()  # int8 mixed precision: Linear layers kept fp32
    seconds: float | None = None  # what building and judging it cost at load (timing not included)

    def to_dict(self) -> dict:
        return {**asdict(self), "fp32_layers": list(self.fp32_layers)}


@dataclass(frozen=True)
class RuntimeChoice:
    """What ``load_for_serving`` chose for one model folder (``ServingChoice`` is this class)."""

    runtime: str  # "onnxruntime" or "torch": what runs the forward pass (GET /model's "runtime")
    precision: str = "fp32"  # "fp32", "int8", "bf16" or "fp16"
    canary: CanaryCheck | None = None  # forced "onnxruntime": the agreement check; None when not tried
    name: str = TORCH  # the candidate that serves, one of CANDIDATES
    requested: str = TORCH  # the serving_runtime asked for ("auto" or a name)
    candidates: tuple[CandidateResult, ...] = ()  # everything measured (empty: nothing was)
    probe: str | None = None  # "evaluation" (probe.json) or "canaries" (older folders); None: not probed
    probe_texts: int = 0  # texts each candidate answered
    fp32_layers: tuple[str, ...] = ()  # int8 serves with these Linear layers kept fp32
    reason: str = ""  # why this one serves
    seconds: float | None = None  # what the whole choice cost at load (None: nothing was measured)

    @property
    def quantized(self) -> bool:
        return self.precision == "int8"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "precision": self.precision,
            "requested": self.requested,
            "probe": self.probe,
            "probe_texts": self.probe_texts,
            "fp32_layers": list(self.fp32_layers),
            "reason": self.reason,
            "seconds": self.seconds,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def table(self) -> str:
        """One line: every candidate, its speed and agreement, or why it was dropped."""
        cells = []
        for c in self.candidates:
            what = c.name + (f"[{c.method}]" if c.method else "")
            speed = f"{c.texts_per_s:.0f}/s" if c.texts_per_s is not None else "-"
            agree = f"agree {c.agreement:.3f}" if c.agreement is not None else "agree -"
            cost = f" [{c.seconds:.1f}s]" if c.seconds is not None else ""
            verdict = "ok" if c.accepted else f"dropped ({c.reason})"
            cells.append(f"{what} {speed} {agree} {verdict}{cost}")
        return " | ".join(cells)


@dataclass(frozen=True)
class Probe:
    """The texts every candidate answers: evaluation texts (when the folder has them), then canaries."""

    texts: tuple[str, ...]
    labels: np.ndarray | None  # class index per evaluation text (-1: unknown label); None: unlabelled
    source: str  # "evaluation" or "canaries"

    @classmethod
    def of(cls, model: TweetClassifier, limit: int) -> Probe:
        probe = model.probe or {}
        texts = [str(t) for t in list(probe.get("texts") or [])[:limit]]
        if not texts:
            return cls(CANARY_TEXTS, None, "canaries")
        labels = None
        raw = probe.get("labels")
        if raw is not None and len(raw) >= len(texts):
            index = {name: i for i, name in enumerate(model.labels)}
            labels = np.array([_label_index(v, index, len(model.labels)) for v in list(raw)[: len(texts)]])
        return cls((*texts, *CANARY_TEXTS), labels, "evaluation")

    @property
    def evaluation_texts(self) -> tuple[str, ...]:
        return self.texts[: len(self.texts) - len(CANARY_TEXTS)] if self.source == "evaluation" else ()


def _label_index(value, index: dict[str, int], n: int) -> int:
    if isinstance(value, str):
        return index.get(value, -1)
    with contextlib.suppress(TypeError, ValueError):
        if 0 <= int(value) < n:
            return int(value)
    return -1


def _score(metric: str, y: np.ndarray, pred: np.ndarray, n: int) -> float:
    """The model's primary metric (``meta["metrics"]["primary"]``) over the classes present in ``y``."""
    if metric == "accuracy":
        return float(np.mean(y == pred))
    classes = [c for c in range(n) if (y == c).any()]
    recall = [float(np.mean(pred[y == c] == c)) for c in classes]
    if metric != "macro_f1":
        return float(np.mean(recall))
    f1 = []
    for c, r in zip(classes, recall, strict=True):
        predicted = pred == c
        p = float(np.mean(y[predicted] == c)) if predicted.any() else 0.0
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f1))


@dataclass(frozen=True)
class Verdict:
    agreement: float
    score_drop: float | None
    canary_diff: float | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


class Judge:
    """Answers "is this candidate within the gate?" against the fp32 torch answers on the probe."""

    def __init__(
        self, fp32: TweetClassifier, probe: Probe, gate: Gate, reference_canaries: np.ndarray | None = None
    ):
        self.probe, self.gate, self.n = probe, gate, len(fp32.labels)
        self.p32 = fp32.predict_proba(list(probe.texts), batch_size=TIMING_BATCH)
        self.canaries = reference_canaries if reference_canaries is not None else canary_proba(fp32)
        self.metric = str((fp32.meta.get("metrics") or {}).get("primary") or "macro_recall")
        self.known = None if probe.labels is None else probe.labels >= 0
        if self.known is not None and not self.known.any():
            self.known = None
        self.fp32_score = self._score(self.p32) if self.known is not None else None

    def _score(self, proba: np.ndarray) -> float:
        n_eval = len(self.probe.labels)
        pred = proba[:n_eval].argmax(axis=1)[self.known]
        return _score(self.metric, self.probe.labels[self.known], pred, self.n)

    def verdict(self, proba: np.ndarray, canary_diff: float | None = None, *, fp32: bool = False) -> Verdict:
        agreement = float(np.mean(proba.argmax(axis=1) == self.p32.argmax(axis=1)))
        drop = None if self.fp32_score is None else self.fp32_score - self._score(proba)
        failures = gate_failures(
            drop, agreement, max_drop=self.gate.max_drop, min_agreement=self.gate.min_agreement
        )
        if fp32 and canary_diff is not None and canary_diff > self.gate.max_canary_diff:
            failures.append(f"differs from torch by {canary_diff:.2g} on canaries")
        return Verdict(agreement, drop, canary_diff, tuple(failures))

    def __call__(self, model: TweetClassifier, *, fp32: bool = False) -> Verdict:
        proba = model.predict_proba(list(self.probe.texts), batch_size=TIMING_BATCH)
        diff = float(np.abs(canary_proba(model) - self.canaries).max())
        return self.verdict(proba, diff, fp32=fp32)

    def passes(self, proba: np.ndarray) -> bool:
        """The gate on probabilities alone (the mixed-precision search's test)."""
        return self.verdict(proba).passed


@dataclass
class Built:
    """What a candidate's builder returns: the model, its verdict and how it was made."""

    model: TweetClassifier | None
    verdict: Verdict | None
    method: str | None = None
    fp32_layers: tuple[str, ...] = ()
    detail: str = ""  # why nothing usable was built


@dataclass(frozen=True)
class Candidate:
    """A runtime to try: ``build(judge)`` makes it (variants included) and says whether it passes."""

    name: str
    engine: str
    precision: str
    build: Callable[[Judge], Built]


def canary_proba(model: TweetClassifier) -> np.ndarray:
    """``model``'s class probabilities on ``CANARY_TEXTS``."""
    return model.predict_proba(list(CANARY_TEXTS))


def measure_throughput(name: str, model: TweetClassifier, texts: Sequence[str]) -> float:
    """Texts per second of one pass of ``model`` over ``texts`` in batches of ``TIMING_BATCH``, as the
    service's batcher runs them (the caller warms the model up and keeps the best of its rounds)."""
    start = time.perf_counter()
    model.predict_proba(list(texts), batch_size=TIMING_BATCH)
    return len(texts) / max(time.perf_counter() - start, 1e-9)


class AutocastTweetClassifier(TweetClassifier):
    """The fp32 model run under autocast (bf16 / fp16 matmuls); shares the fp32 weights, never saved."""

    def __init__(self, model: TweetClassifier, *, device_type: str, dtype: torch.dtype):
        super().__init__(
            model.encoder,
            model.tokenizer,
            model.head,
            model.labels,
            max_length=model.max_length,
            meta={**model.meta, "runtime": f"torch-autocast-{device_type}-{str(dtype).split('.')[-1]}"},
            probe=model.probe,
        )
        self.device_type, self.dtype = device_type, dtype

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return super().forward(input_ids, attention_mask).float()

    def save(self, folder):
        raise TypeError("an autocast serving model is not saved: save the fp32 model")


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls in hardware (AVX512-BF16 or AMX); elsewhere autocast emulates them, slowly."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


class _Context:
    """What candidates share: one ONNX export, torch's mixed-precision layers (tried by ORT too)."""

    def __init__(self, fp32: TweetClassifier, probe: Probe):
        self.fp32, self.probe = fp32, probe
        self._export = None
        self._export_error: Exception | None = None
        self.fp32_layers: tuple[str, ...] = tuple(fp32.meta.get(FP32_LAYERS_KEY) or ())

    def export(self):
        from model_runner.modeling import onnx_backend  # lazy: onnx loads only when ORT is a candidate

        if self._export is None and self._export_error is None:
            try:
                self._export = onnx_backend.OnnxExport(self.fp32)
            except Exception as exc:  # torch serves; the reason is reported
                self._export_error = exc
        if self._export_error is not None:
            raise RuntimeError(
                f"ONNX export failed ({type(self._export_error).__name__}: {self._export_error})"
            )
        return self._export

    def close(self) -> None:
        if self._export is not None:
            self._export.close()


def _plain(make: Callable[[], TweetClassifier], *, fp32: bool = False, method: str | None = None):
    def build(judge: Judge) -> Built:
        model = make()
        return Built(model, judge(model, fp32=fp32), method)

    return build


def _torch_int8(ctx: _Context) -> Callable[[Judge], Built]:
    def build(judge: Judge) -> Built:
        if ctx.fp32_layers:  # recorded by training: reproduce that model first
            model = quantize_int8(ctx.fp32, keep_fp32=ctx.fp32_layers)
            verdict = judge(model)
            if verdict.passed:
                return Built(model, verdict, f"dynamic, {len(ctx.fp32_layers)} layers fp32", ctx.fp32_layers)
        full = quantize_int8(ctx.fp32, keep_fp32=())
        verdict = judge(full)
        if verdict.passed:
            return Built(full, verdict, "dynamic")
        mixed, search = search_mixed_int8(ctx.fp32, list(judge.probe.texts), judge.p32, judge.passes)
        if mixed is None:
            return Built(full, verdict, "dynamic", detail=search.reason)
        ctx.fp32_layers = search.fp32_layers
        method = f"dynamic, {len(search.fp32_layers)} layers fp32"
        return Built(mixed, judge(mixed), method, search.fp32_layers)

    return build


def _onnx_int8(ctx: _Context) -> Callable[[Judge], Built]:
    def build(judge: Judge) -> Built:
        export = ctx.export()
        calibration = list(judge.probe.texts[:CALIBRATION_TEXTS])
        makers = {
            "dynamic": lambda keep: export.int8_dynamic(keep_fp32=keep),
            "static-qdq": lambda keep: export.int8_static(calibration, keep_fp32=keep),
        }

        def variants(keep: tuple[str, ...], methods: Sequence[str]) -> list[Built]:
            out = []
            for method in methods:
                make = makers[method]
                label = method + (f", {len(keep)} layers fp32" if keep else "")
                try:
                    model = make(keep)
                    out.append(Built(model, judge(model), label, keep))
                except Exception as exc:  # one variant failing leaves the other
                    log.debug("ONNX Runtime int8 %s failed: %s", label, exc)
                    out.append(Built(None, None, label, keep, f"{label} failed: {type(exc).__name__}: {exc}"))
            return out

        def best(built: list[Built]) -> Built:
            usable = [b for b in built if b.verdict is not None]
            if not usable:
                return Built(None, None, detail="; ".join(b.detail for b in built))
            # agreement first (int8 is there to answer like fp32, only faster), then the smaller drop
            chosen = max(
                usable, key=lambda b: (b.verdict.passed, b.verdict.agreement, -(b.verdict.score_drop or 0))
            )
            others = [f"{b.method}: agreement {b.verdict.agreement:.4f}" for b in usable if b is not chosen]
            others += [b.detail for b in built if b.verdict is None]
            if others:
                chosen.method = f"{chosen.method} (not {'; '.join(others)})"
            return chosen

        chosen = best(variants((), list(makers)))
        if (chosen.verdict is None or not chosen.verdict.passed) and ctx.fp32_layers:
            # torch found the layers int8 cannot take: retry the better graph without them
            method = "static-qdq" if (chosen.method or "").startswith("static") else "dynamic"
            retry = best(variants(ctx.fp32_layers, [method]))
            if retry.verdict is not None and (chosen.verdict is None or retry.verdict.passed):
                chosen = retry
        return chosen

    return build


def _cuda(ctx: _Context) -> Callable[[], TweetClassifier]:
    def make() -> TweetClassifier:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
        model = ctx.fp32 if ctx.fp32.head[-1].weight.is_cuda else copy.deepcopy(ctx.fp32).to("cuda")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return AutocastTweetClassifier(model, device_type="cuda", dtype=dtype)

    return make


def _device_of(model: TweetClassifier) -> torch.device:
    return next(model.head.parameters()).device


def candidates_for(fp32: TweetClassifier, requested: str, ctx: _Context) -> list[Candidate]:
    """The candidates to measure besides fp32 torch: all this hardware supports (auto) or the one asked."""
    on_cpu = _device_of(fp32).type == "cpu"
    cuda_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    table = {
        ONNXRUNTIME: Candidate(
            ONNXRUNTIME, ONNXRUNTIME, "fp32", _plain(lambda: ctx.export().fp32(), fp32=True)
        ),
        TORCH_INT8: Candidate(TORCH_INT8, TORCH, "int8", _torch_int8(ctx)),
        ONNXRUNTIME_INT8: Candidate(ONNXRUNTIME_INT8, ONNXRUNTIME, "int8", _onnx_int8(ctx)),
        TORCH_BF16: Candidate(
            TORCH_BF16,
            TORCH,
            "bf16",
            _plain(lambda: AutocastTweetClassifier(fp32, device_type="cpu", dtype=torch.bfloat16)),
        ),
        CUDA: Candidate(CUDA, TORCH, cuda_precision, _plain(_cuda(ctx))),
    }
    if requested != AUTO:
        return [table[requested]] if requested in table else []
    names = []
    if on_cpu:
        names += [ONNXRUNTIME, TORCH_INT8, ONNXRUNTIME_INT8]
        if cpu_has_fast_bf16():
            names.append(TORCH_BF16)
    if torch.cuda.is_available():
        names.append(CUDA)
    return [table[n] for n in names]


def choose_runtime(
    fp32: TweetClassifier,
    *,
    requested: str = AUTO,
    gate: Gate | None = None,
    probe_texts: int = 256,
    reference_canaries: np.ndarray | None = None,
    measure: Measure | None = None,
    extra: Sequence[Candidate] = (),
    tag: str = "model",
) -> tuple[TweetClassifier, RuntimeChoice]:
    """The fastest candidate within the gate (``requested="auto"``) or the one asked for, if within it.

    ``fp32``: the loaded fp32 torch model (the reference; it serves when nothing else qualifies).
    ``reference_canaries``: its canary probabilities as the service's check computed them.
    ``measure(name, model, texts)``: texts/s (default ``measure_throughput``; tests pass their own).
    ``extra``: more candidates (tests). Returns the model that serves and the choice with every
    candidate's figures; one INFO line logs the table.
    """
    if requested != AUTO and requested not in CANDIDATES and requested not in {c.name for c in extra}:
        raise ValueError(f"unknown serving runtime {requested!r}")
    gate = gate or Gate()
    measure = measure or measure_throughput
    began = start = time.perf_counter()
    probe = Probe.of(fp32, probe_texts)
    judge = Judge(fp32, probe, gate, reference_canaries)
    timing = list(probe.evaluation_texts[:TIMING_TEXTS] or probe.texts)
    ctx = _Context(fp32, probe)
    base = CandidateResult(
        TORCH,
        TORCH,
        "fp32",
        True,
        "",
        agreement=1.0,
        score_drop=0.0 if judge.fp32_score is not None else None,
        canary_diff=float(np.abs(judge.p32[-len(CANARY_TEXTS) :] - judge.canaries).max()),
        seconds=_since(start),
    )
    results: list[CandidateResult] = [base]
    alive: dict[int, TweetClassifier] = {0: fp32}  # index in results -> model, within the gate
    cands = [c for c in candidates_for(fp32, requested, ctx) if requested in (AUTO, c.name)]
    cands += [c for c in extra if requested in (AUTO, c.name)]
    try:
        for cand in cands:
            result, model = _evaluate(cand, judge)
            if model is not None:
                alive[len(results)] = model
            results.append(result)
    finally:
        ctx.close()
    speeds = _time_in_rounds(alive, results, measure, timing)
    results = [replace(r, texts_per_s=speeds.get(i)) for i, r in enumerate(results)]
    pick = 0
    for i in alive:
        if results[i].name == requested or (requested == AUTO and _merit(results[i]) > _merit(results[pick])):
            pick = i
    forced_failed = requested not in (AUTO, TORCH) and results[pick].name != requested
    if forced_failed:
        why = next((r.reason for r in results if r.name == requested), "not available")
        reason = f"{requested} was asked for but misses the gate ({why}); fp32 torch serves"
        log.warning("%s: %s", tag, reason)
    elif requested == AUTO:
        reason = f"fastest of {sum(r.accepted for r in results)} runtimes within the gate"
    else:
        reason = f"{requested} was asked for and is within the gate"
    chosen = results[pick]
    choice = RuntimeChoice(
        runtime=chosen.engine,
        precision=chosen.precision,
        name=chosen.name,
        requested=requested,
        candidates=tuple(results),
        probe=probe.source,
        probe_texts=len(probe.texts),
        fp32_layers=chosen.fp32_layers,
        reason=reason,
        seconds=_since(began),
    )
    log.info("%s: serving %s (%s), %s; %s", tag, choice.name, choice.precision, reason, choice.table())
    return alive[pick], choice


def _merit(result: CandidateResult) -> float:
    """The speed a candidate competes with: reduced precision must win by ``REDUCED_PRECISION_MARGIN``."""
    speed = result.texts_per_s or 0.0
    return speed if result.precision == "fp32" else speed / REDUCED_PRECISION_MARGIN


def _evaluate(cand: Candidate, judge: Judge) -> tuple[CandidateResult, TweetClassifier | None]:
    """Build ``cand`` and judge it: its result (untimed) and its model when within the gate."""
    start = time.perf_counter()
    common = {"name": cand.name, "engine": cand.engine, "precision": cand.precision}
    try:
        built = cand.build(judge)
    except Exception as exc:  # a candidate that cannot be built is just not served
        reason = f"{type(exc).__name__}: {exc}"
        return CandidateResult(**common, accepted=False, reason=reason, seconds=_since(start)), None
    if built.model is None or built.verdict is None:
        reason = built.detail or "not built"
        return CandidateResult(**common, accepted=False, reason=reason, seconds=_since(start)), None
    v = built.verdict
    figures = {
        "agreement": v.agreement,
        "score_drop": v.score_drop,
        "canary_diff": v.canary_diff,
        "method": built.method,
        "fp32_layers": built.fp32_layers,
        "seconds": _since(start),
    }
    if not v.passed:
        reason = "; ".join(v.failures) + (f" ({built.detail})" if built.detail else "")
        return CandidateResult(**common, accepted=False, reason=reason, **figures), None
    return CandidateResult(**common, accepted=True, reason="", **figures), built.model


def _time_in_rounds(
    alive: dict[int, TweetClassifier], results: list[CandidateResult], measure: Measure, timing: list[str]
) -> dict[int, float]:
    """Best texts/s of each model within the gate, timed round-robin (one pass each per round).

    Rounds rather than one candidate after another: on a shared CPU a neighbour's burst then slows one
    pass of every candidate instead of all passes of one, and the best of the rounds sees each at its
    quietest. Stops after the round that exhausts ``TIMING_BUDGET_S`` per candidate.
    """
    for model in alive.values():  # warm-up: lazy init, weight packing, ORT's first-run allocations
        model.predict_proba(timing[:8], batch_size=TIMING_BATCH)
    best: dict[int, float] = {}
    deadline = time.perf_counter() + TIMING_BUDGET_S * len(alive)
    for _ in range(TIMING_REPEATS):
        for i, model in alive.items():
            best[i] = max(best.get(i, 0.0), measure(results[i].name, model, timing))
        if time.perf_counter() > deadline:
            break
    return best


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)
