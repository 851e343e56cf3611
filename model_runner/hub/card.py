"""The model card (README.md) of an exported model, built with ``huggingface_hub.ModelCard``.

The metadata is a ``ModelCardData`` (license, language, base model, pipeline tag, library and the
held-out metrics as ``EvalResult`` entries, which the Hub renders as the model-index); the text shows
the metrics with their bootstrap confidence interval (``EvalResult`` has no field for one), the per-class
results, the training data, hyperparameters, intended use and limitations, and a "how to use" whose code
is run by the tests exactly as rendered (``tests/hub/test_outside_client.py`` executes it in a virtual
environment that has only the client libraries of ``requirements/outside-client.txt``).

Everything except ``task`` and ``labels`` is optional: a section or row whose data is missing is left
out rather than rendered as "None", so a card built from a partial training record is still readable.
"""

from __future__ import annotations

import re
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# What the Hub accepts as a base_model reference; a local folder path there fails its YAML validation.
_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")
_METRIC_NAMES = {"macro_recall": "Macro recall", "macro_f1": "Macro F1", "accuracy": "Accuracy"}
# model-index wants a metric type from the Hub's vocabulary; the "macro" part goes in the display name.
_METRIC_TYPES = {"macro_recall": "recall", "macro_f1": "f1", "accuracy": "accuracy"}


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _source_name(source: str) -> str:
    # a local path says nothing to a reader of the card and reveals a server's layout; Hub ids
    # ("owner/name[:config]") and URLs are kept whole
    is_path = source.startswith(("/", "~", ".")) or "\\" in source or source.count("/") > 1
    return re.split(r"[\\/]", source.rstrip("/\\"))[-1] if is_path and "://" not in source else source


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _title(info: dict) -> str:
    return info.get("model_name") or f"tweetpulse {info['task']}"


def _base_id(info: dict) -> str | None:
    base = info.get("base_model") or {}
    return base.get("id") if isinstance(base, dict) else str(base)


def _summary(info: dict) -> list[str]:
    labels = ", ".join(f"`{label}`" for label in info["labels"])
    lines = [
        f"# {_title(info)}",
        "",
        f"Classifies English tweets for the **{info['task']}** task into: {labels}.",
    ]
    base = info.get("base_model") or {}
    if base_id := _base_id(info):
        revision = base.get("revision") if isinstance(base, dict) else None
        at = f" (revision `{revision}`)" if revision else ""
        adapter = f" with a `{info['adapter']}` adapter" if info.get("adapter") else ""
        lines += [
            "",
            f"Built on `{base_id}`{at}{adapter}: mean-pooled, L2-normalised embedding + a small head.",
        ]
    facts = [
        ("Model version", info.get("version")),
        ("Serving precision", info.get("serving")),
        ("MLflow run", info.get("mlflow_run_id")),
    ]
    facts = [f"- {name}: `{value}`" for name, value in facts if value not in (None, "")]
    return lines + (["", *facts] if facts else [])


def _evaluation(info: dict) -> list[str]:
    metrics = info.get("metrics") or {}
    primary = info.get("metric") or metrics.get("primary")
    rows = []
    for key, name in _METRIC_NAMES.items():
        if not isinstance(metrics.get(key), int | float):
            continue
        ci = metrics.get(f"{key}_ci")
        ci_text = f"[{_num(float(ci[0]))}, {_num(float(ci[1]))}]" if ci and len(ci) == 2 else ""
        rows.append([name + (" (primary)" if key == primary else ""), _num(float(metrics[key])), ci_text])
    per_class = metrics.get("per_class") or {}
    if not rows and not per_class:
        return ["## Evaluation", "", "No evaluation results were recorded for this version."]
    out = ["## Evaluation", ""]
    if n := metrics.get("n"):
        out += [f"On {n} held-out tweets that were never used for training or model selection.", ""]
    if rows:
        out += [_table(["Metric", "Value", "95% CI"], rows), ""]
        out += ["95% CI: percentile bootstrap over the evaluation rows.", ""]
    if per_class:
        keys = ["precision", "recall", "f1", "support"]
        table = [[label, *(_num(v.get(k, "")) for k in keys)] for label, v in per_class.items()]
        out += ["Per class:", "", _table(["Label", "Precision", "Recall", "F1", "Support"], table)]
    return out


def _data(info: dict) -> list[str]:
    data = info.get("data") or {}
    if not data:
        return []
    out = ["## Training data", ""]
    if source := data.get("source"):
        out.append(f"- Source: `{_source_name(str(source))}`")
    if data.get("rows_in") is not None:
        out.append(f"- Rows read: {data['rows_in']}")
    for key, name in (("rows_out", "Rows kept"), ("dropped", "Rows dropped")):
        if counts := data.get(key):
            out.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if data.get("eval_source"):
        out.append(f"- Evaluation split: `{data['eval_source']}`")
    if data.get("dataset_hash"):
        out.append(f"- Dataset hash: `{data['dataset_hash']}`")
    if warm := info.get("warmup"):
        out.append(
            f"- Encoder warm-up: fine-tuned first on {warm.get('rows')} tweets of the "
            f"`{warm.get('task')}` task ({warm.get('epochs')} epochs, dataset hash "
            f"`{warm.get('data_hash')}`), then on this data"
        )
    if teacher := info.get("teacher"):
        revision = f" (revision `{teacher['base_revision']}`)" if teacher.get("base_revision") else ""
        out.append(
            f"- Distilled from a teacher: `{teacher.get('base_id')}`{revision}, fine-tuned on "
            f"{teacher.get('train_rows')} tweets (dataset hash `{teacher.get('data_hash')}`); the student "
            "learnt from the labels and the teacher's soft labels"
        )
    if balance := data.get("class_balance"):
        labels = list(info["labels"])
        rows = [[split, *(counts.get(label, 0) for label in labels)] for split, counts in balance.items()]
        out += ["", "Class balance:", "", _table(["Split", *labels], rows)]
    return out


def _training(info: dict) -> list[str]:
    hp = info.get("hyperparameters") or {}
    if not hp:
        return []
    return [
        "## Training hyperparameters",
        "",
        _table(["Name", "Value"], [[k, _num(v)] for k, v in hp.items()]),
    ]


_USE_AND_LIMITS = """## Intended use

Aggregate sentiment monitoring of English tweets (dashboards, trend detection). Not for decisions about
individual people and not for content moderation without human review.

## Limitations and bias

- Trained and evaluated on English tweets only; other languages and long-form text are out of scope.
- Domain shift: new slang, events, products or communities differ from the training data; expect
  lower quality than the evaluation above and monitor it.
- Sarcasm, irony and negated or mixed sentiment are often misclassified.
- Labels come from human annotators and the data reflects who tweets; the model can reproduce their
  biases (dialects, identity terms, topics). Audit before use on a specific population.
- Input is cleaned as in training (emoji become their names, mentions `@user`, links `http`); the
  exported tokenizer does it, other ways of feeding the model must do the same."""


# The client side of the export, as pinned in requirements/outside-client.txt (optimum-onnx 0.1.0 needs
# transformers < 4.58).
PIP_LINE = 'pip install "optimum-onnx[onnxruntime]==0.1.0" "transformers>=4.57,<4.58"'
EXAMPLE_TEXT = "what a great day! 😂 @friend https://t.co/x"


def usage_code(repo: str) -> str:
    """The "how to use" Python lines for ``repo`` (a Hub id or a local folder of an export)."""
    return (
        "from optimum.onnxruntime import ORTModelForSequenceClassification\n"
        "from transformers import AutoTokenizer, pipeline\n"
        f'classify = pipeline("text-classification", model=ORTModelForSequenceClassification.from_pretrained('
        f'"{repo}"), tokenizer=AutoTokenizer.from_pretrained("{repo}"), truncation=True)\n'
        f'print(classify(["{EXAMPLE_TEXT}"]))\n'
    )


def extract_usage(card: str) -> str:
    """The Python code block of the card's "How to use" section (what the outside-client test runs)."""
    section = card.split("## How to use", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def _how_to(info: dict) -> str:
    repo = info.get("repo_id") or "<owner>/<repo>"
    max_length = f"{info['max_length']} tokens" if info.get("max_length") else "the model's max length"
    return f"""## How to use

No tweetpulse needed: the repository root is a standard ONNX export (the whole model, to logits) with its
tokenizer and a `config.json` carrying `id2label`. The tweet cleaning that training applies (emoji to
their names, links to `http`, mentions to `@user`) is part of `tokenizer.json`'s normalizer, so raw
tweets go in as they are.

```bash
{PIP_LINE}
```

```python
{usage_code(repo)}```

`truncation=True` cuts at `model_max_length` ({max_length}), where the tweetpulse service cuts.
A private repository needs a token (`HF_TOKEN` or `hf auth login`).

## Files

- `model.onnx`: encoder, mean pooling (padding excluded), L2 normalisation and the classification head
  in one graph; inputs `input_ids` and `attention_mask`, output `logits`.
- `config.json`, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`: the encoder's
  config plus `id2label`/`label2id` and a `tweetpulse` block; the tokenizer with the cleaning built in.
- `tweetpulse/`: the native tweetpulse model folder (safetensors encoder and head, `label_map.json`,
  `tweetpulse.json`, `checksums.json`), which the tweetpulse service serves:

```python
from huggingface_hub import snapshot_download
from model_runner.modeling.serving import load_for_serving

folder = snapshot_download("{repo}", allow_patterns=["tweetpulse/*"])
model, choice = load_for_serving(f"{{folder}}/tweetpulse")
```"""


def card_data(info: dict) -> ModelCardData:
    """The card's metadata (YAML front matter)."""
    metrics = info.get("metrics") or {}
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type="tweets",
            dataset_name=f"{info['task']} held-out evaluation split",
            dataset_split="evaluation",
            metric_type=_METRIC_TYPES[key],
            metric_name=_METRIC_NAMES[key],
            metric_value=round(float(metrics[key]), 4),
        )
        for key in _METRIC_NAMES
        if isinstance(metrics.get(key), int | float)
    ]
    base_id = _base_id(info)
    return ModelCardData(
        model_name=_title(info),
        language="en",
        license=info.get("license") or "apache-2.0",
        # the root loads with optimum (ONNX Runtime) + transformers; there are no transformers weights
        library_name="optimum",
        pipeline_tag="text-classification",
        base_model=base_id if base_id and _HUB_ID_RE.match(base_id) else None,
        tags=list(dict.fromkeys(["text-classification", "onnx", "tweets", "tweetpulse", info["task"]])),
        eval_results=eval_results or None,
    )


def build_model_card(info: dict) -> ModelCard:
    """The model card for ``info`` (see the module docstring); ``info["repo_id"]`` goes in the code."""
    sections = [
        "\n".join(_summary(info)),
        "\n".join(_evaluation(info)),
        "\n".join(_data(info)),
        "\n".join(_training(info)),
        _USE_AND_LIMITS,
        _how_to(info),
    ]
    body = "\n\n".join(s for s in sections if s) + "\n"
    return ModelCard(f"---\n{card_data(info).to_yaml()}\n---\n\n{body}")


def render_model_card(info: dict) -> str:
    """README.md text (YAML front matter + Markdown) for ``info``."""
    return str(build_model_card(info))
