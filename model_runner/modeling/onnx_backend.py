"""ONNX Runtime serving variant of a TweetClassifier (fp32 or int8), built from the fp32 weights at load.

Why: on a CPU, PyTorch eager pays a fixed Python/dispatcher cost per operator per call, which is
most of the time for one short tweet; ONNX Runtime runs the same graph with far less overhead
(single messages ~2x faster, batches about equal: ``python -m benchmarks serving`` and ``quantize``
measure both side by side). Its transformer optimizer's extra fusions (attention, skip-LayerNorm)
were measured too: no faster here, 3x the build time and more peak memory, so they are not used.
Its int8 comes in two forms, both per-channel and on the weight MatMuls only (quantizing the
attention's activation x activation MatMuls too is what once flipped 38% of a LoRA-merged champion's
labels): dynamic (u8s8 MatMulInteger) and static QDQ calibrated on the model's probe texts. Whether
either is faster than torch, and agrees well enough with fp32, depends on the CPU and the model, so
``runtimes`` measures both at load; ``OnnxExport`` exports once and builds every variant from it.

The whole model is one graph (encoder, mean pooling, L2 normalisation and the head), so a request is
one ``session.run``. The ONNX file is re-derived from the saved fp32 safetensors every time a model is
loaded (a few seconds, in the background reload) and lives in a temp folder: the registry keeps one
format, and what is served is always exactly what was validated.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_runner.data.cleaning import clean_text
from model_runner.modeling.classifier import TweetClassifier, mean_pool

METHOD_FP32 = "onnxruntime-fp32"
METHOD_INT8 = "onnxruntime-dynamic-int8-perchannel"
METHOD_INT8_STATIC = "onnxruntime-static-qdq-int8-perchannel"


class _Graph(nn.Module):
    """What is exported: token ids and mask in, logits out (the head included)."""

    def __init__(self, model: TweetClassifier):
        super().__init__()
        self.encoder = model.encoder
        self.head = model.head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(nn.functional.normalize(mean_pool(hidden.float(), attention_mask), dim=-1))


def export_onnx(model: TweetClassifier, path: Path) -> Path:
    """Trace ``model`` (fp32, CPU) to an ONNX graph with dynamic batch and sequence axes.

    Tracing only reads the weights, so no copy is made: at load time a copy of the encoder is what
    pushes the service's peak memory up.
    """
    graph = _Graph(model).eval()
    # The example batch contains padding, so that any branch transformers takes on the example mask
    # at trace time is the general, masked one (tests compare padded batches with torch).
    ids = torch.tensor([[101, 2000, 2001, 2002, 2003, 102], [101, 2000, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            graph,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    return path


def onnx_node(layer: str) -> str:
    """The exported MatMul node of the encoder's Linear ``layer`` (a torch module name such as
    ``encoder.layer.0.attention.self.query``): the tracer names nodes by module scope, under
    ``_Graph.encoder``."""
    return "/encoder/" + layer.replace(".", "/") + "/MatMul"


def _is_ffn_down(node: str) -> bool:
    # BERT names it <layer>/output/dense (the attention's projection is <layer>/attention/output/dense)
    return node.endswith("/output/dense/MatMul") and "/attention/" not in node


def weight_matmuls(path: Path) -> list[str]:
    """The MatMul nodes whose second input is a weight (the encoder's Linear layers).

    Only these are quantized: the attention's activation x activation MatMuls (Q.K^T, P.V) have no
    fixed range, and quantizing them is what made the first ORT int8 export flip so many labels.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


class _DropQuantizerChatter(logging.Filter):
    """onnxruntime.quantization logs on the root logger, per call: advice to pre-process the model and
    one line per tensor it leaves unquantized (on purpose, here). Not what a service log is for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root, chatter = logging.getLogger(), _DropQuantizerChatter()
    root.addFilter(chatter)  # a logger's filters see only its own records: other modules' pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero ranges (padding) in the calibrator
            yield
    finally:
        root.removeFilter(chatter)


def _quantize(src: Path, dst: Path, *, exclude: Sequence[str] = ()) -> Path:
    # lazy: the service imports this module at start-up; onnx/onnxruntime load only for that runtime
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights for the encoder's Linear MatMuls; the head is a Gemm and stays fp32,
    # because its few weights decide the label and cost nothing.
    with _quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_quantize=[n for n in weight_matmuls(src) if n not in set(exclude)],
            # some exported ops defeat ONNX shape inference; every float tensor here is fp32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def _quantize_static(
    src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], *, exclude: Sequence[str] = ()
) -> Path:
    """Static QDQ int8: activation ranges calibrated once on ``feeds`` (min/max), weights per channel.

    No per-batch range search at run time (dynamic int8 scans each activation), and a text's scores
    no longer depend on its batch neighbours; whether it agrees with fp32 better than dynamic int8
    depends on the model, so ``runtimes`` measures both.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with _quiet_quantizer():
        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the x86 fast path
            weight_type=QuantType.QInt8,
            nodes_to_quantize=[n for n in weight_matmuls(src) if n not in set(exclude)],
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "DefaultTensorType": onnx.TensorProto.FLOAT,
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                # a MatMul weight is (in, out): one scale per output column
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
            },
        )
    return dst


def _feeds(model: TweetClassifier, texts: Sequence[str], batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """``texts`` as ``predict_proba`` hands them to the graph: cleaned, by length, padded per batch."""
    cleaned = sorted((clean_text(t) for t in texts), key=len)
    out = []
    for start in range(0, len(cleaned), batch_size):
        batch = model.tokenizer(
            cleaned[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=model.max_length,
            return_tensors="np",
        )
        out.append(
            {
                "input_ids": batch["input_ids"].astype(np.int64),
                "attention_mask": batch["attention_mask"].astype(np.int64),
            }
        )
    return out


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Serving sees every batch shape; the arena would keep the largest one's memory forever anyway.
    options.enable_cpu_mem_arena = True
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTweetClassifier(TweetClassifier):
    """Same interface as TweetClassifier; ``forward`` runs an ONNX Runtime session on the CPU."""

    def __init__(self, model: TweetClassifier, session, *, method: str, int8: bool):
        super().__init__(
            None,
            model.tokenizer,
            model.head,
            model.labels,
            max_length=model.max_length,
            meta=model.meta,
            probe=model.probe,
        )
        self.meta = {**model.meta, "runtime": method}
        self.session = session
        self.int8 = int8

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False),
        }
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the ONNX serving graph outputs logits only")

    def save(self, folder: Path) -> Path:
        raise TypeError("an ONNX serving model is not saved: save the fp32 model")


class OnnxExport:
    """One export of an fp32 model, from which fp32 and int8 sessions are built (export once, since
    it is the slow part); a context manager that removes the temp folder."""

    def __init__(self, model: TweetClassifier, *, threads: int | None = None):
        self.model = model
        self.threads = threads or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        self.work = Path(tempfile.mkdtemp(prefix="tp-onnx-"))
        try:
            self.path = export_onnx(model, self.work / "model.onnx")
        except BaseException:
            self.close()
            raise

    def fp32(self) -> OnnxTweetClassifier:
        return self._wrap(self.path, METHOD_FP32, int8=False)

    def int8_dynamic(self, *, keep_fp32: Sequence[str] = ()) -> OnnxTweetClassifier:
        """Dynamic int8 with the encoder Linear layers ``keep_fp32`` (torch module names) left fp32."""
        dst = self.work / f"model.dyn{len(list(self.work.iterdir()))}.onnx"
        path = _quantize(self.path, dst, exclude=[onnx_node(n) for n in keep_fp32])
        return self._wrap(path, METHOD_INT8, int8=True, keep_fp32=keep_fp32)

    def int8_static(self, texts: Sequence[str], *, keep_fp32: Sequence[str] = ()) -> OnnxTweetClassifier:
        """Static QDQ int8 calibrated on ``texts``, ``keep_fp32`` left fp32, and always the FFN down
        projections: their input is the GELU output, whose long tail one calibrated scale cannot
        cover (all-MiniLM-L6-v2 with a quick head, 256 tweets: agreement with fp32 0.87 with them
        int8, 0.96 without, like dynamic int8)."""
        dst = self.work / f"model.qdq{len(list(self.work.iterdir()))}.onnx"
        feeds = _feeds(self.model, texts)
        exclude = [onnx_node(n) for n in keep_fp32]
        exclude += [n for n in weight_matmuls(self.path) if _is_ffn_down(n)]
        path = _quantize_static(self.path, dst, feeds, exclude=exclude)
        return self._wrap(path, METHOD_INT8_STATIC, int8=True, keep_fp32=keep_fp32)

    def _wrap(
        self, path: Path, method: str, *, int8: bool, keep_fp32: Sequence[str] = ()
    ) -> OnnxTweetClassifier:
        twin = OnnxTweetClassifier(self.model, _session(path, self.threads), method=method, int8=int8)
        if keep_fp32:
            twin.meta["int8_fp32_layers"] = list(keep_fp32)
        return twin

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)  # sessions hold their graphs; the files can go

    def __enter__(self) -> OnnxExport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_onnx_runtime(model: TweetClassifier, *, int8: bool, threads: int | None = None) -> OnnxTweetClassifier:
    """Export and (for ``int8``: dynamic, every Linear) quantize ``model``; ``model`` is left untouched."""
    with OnnxExport(model, threads=threads) as export:
        return export.int8_dynamic() if int8 else export.fp32()
