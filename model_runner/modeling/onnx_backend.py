"""ONNX Runtime serving variant of a TweetClassifier (fp32 or int8), built from the fp32 weights at load.

Why: on a CPU, PyTorch eager pays a fixed Python/dispatcher cost per operator per call, which is
most of the time for one short tweet; ONNX Runtime runs the same graph with far less overhead
(single messages ~2x faster, batches about equal: ``python -m benchmarks serving`` and ``quantize``
measure both side by side). Its transformer optimizer's extra fusions (attention, skip-LayerNorm)
were measured too: no faster here, 3x the build time and more peak memory, so they are not used.
Its int8 (u8s8 MatMulInteger, per-channel) is no faster than torch's and, on a LoRA-merged champion,
flipped 38% of its labels on validation.jsonl against torch int8's 4% (on the base encoder with a
quick head both flip ~5%), so int8 serving stays with torch's dynamic quantization.

The whole model is one graph (encoder, mean pooling, L2 normalisation and the head), so a request is
one ``session.run``. The ONNX file is re-derived from the saved fp32 safetensors every time a model is
loaded (a few seconds, in the background reload) and lives in a temp folder: the registry keeps one
format, and what is served is always exactly what was validated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_runner.modeling.classifier import TweetClassifier, mean_pool

METHOD_FP32 = "onnxruntime-fp32"
METHOD_INT8 = "onnxruntime-dynamic-int8-perchannel"


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


def _quantize(src: Path, dst: Path) -> Path:
    # lazy: the service imports this module at start-up; onnx/onnxruntime load only for that runtime
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights for the encoder's MatMuls; the head is a Gemm and stays fp32, because
    # its few weights decide the label and cost nothing.
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        # some exported ops defeat ONNX shape inference; every float tensor here is fp32
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return dst


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
            None, model.tokenizer, model.head, model.labels, max_length=model.max_length, meta=model.meta
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


def to_onnx_runtime(model: TweetClassifier, *, int8: bool, threads: int | None = None) -> OnnxTweetClassifier:
    """Export and (for ``int8``) quantize ``model``; the fp32 ``model`` is left untouched."""
    threads = threads or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="tp-onnx-"))
    try:
        path = export_onnx(model, work / "model.onnx")
        if int8:
            path = _quantize(path, work / "model.int8.onnx")
        session = _session(path, threads)  # the session holds the graph; the files can go
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return OnnxTweetClassifier(model, session, method=METHOD_INT8 if int8 else METHOD_FP32, int8=int8)
