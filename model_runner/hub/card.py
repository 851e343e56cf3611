"""The README.md model card pushed next to a promoted model.

Everything except ``task`` and ``labels`` is optional: a section or row whose data is missing is left
out rather than rendered as "None", so a card built from a partial training record is still readable.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

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


def _front_matter(info: dict) -> str:
    meta: dict[str, Any] = {
        # the files are a standard transformers encoder plus a small head (see "How to use")
        "library_name": "transformers",
        "language": ["en"],
        "license": info.get("license") or "other",
        "tags": list(
            dict.fromkeys(["text-classification", "sentiment", "tweets", "tweetpulse", info["task"]])
        ),
    }
    base_id = _base_id(info)
    if base_id and _HUB_ID_RE.match(base_id):
        meta["base_model"] = base_id
    metrics = info.get("metrics") or {}
    reported = [
        {"type": _METRIC_TYPES[key], "name": _METRIC_NAMES[key], "value": round(float(metrics[key]), 4)}
        for key in _METRIC_NAMES
        if isinstance(metrics.get(key), int | float)
    ]
    if reported:
        meta["model-index"] = [
            {
                "name": _title(info),
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Text Classification"},
                        "dataset": {"type": "tweets", "name": f"{info['task']} held-out evaluation split"},
                        "metrics": reported,
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


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
- Input is cleaned as in training (mentions become `@user`, links `http`); skipping that step at
  inference time changes predictions."""


def _how_to(info: dict) -> str:
    repo = info.get("repo_id") or "<owner>/<repo>"
    int8 = (
        "\n`load_for_serving` re-applies the int8 dynamic quantization this version was validated with"
        " (CPU).\n"
        if info.get("serving") == "int8"
        else ""
    )
    return f"""## How to use

With the tweetpulse package:

```python
from huggingface_hub import snapshot_download
from model_runner.modeling.serving import load_for_serving

folder = snapshot_download("{repo}")
model, choice = load_for_serving(folder)  # runtime="onnxruntime" serves as the service does
print(model.predict(["what a great day!"]))
```
{int8}
With plain transformers: the encoder is a standard model (`config.json`, `model.safetensors`, tokenizer
files); the classifier is the mean of the token vectors (padding excluded), L2-normalised, then the head
in `head.safetensors` (a `torch.nn.Sequential`; its kind and the labels are in `tweetpulse.json`).
Clean the text first as `model_runner.data.cleaning.clean_text` does (emoji to their names with the
`emoji` package, mentions to `@user`, links to `http`).

```python
import json, torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = snapshot_download("{repo}")
config = json.load(open(f"{{folder}}/tweetpulse.json"))
tokenizer, encoder = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
head = load_file(f"{{folder}}/head.safetensors")
batch = tokenizer(["what a great day!"], padding=True, truncation=True,
                  max_length=config["max_length"], return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
x = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
if config["head"]["kind"] == "mlp":  # Dropout, Linear, GELU, Dropout, Linear
    x = torch.nn.functional.gelu(x @ head["1.weight"].T + head["1.bias"])
    logits = x @ head["4.weight"].T + head["4.bias"]
else:  # "linear": Dropout, Linear
    logits = x @ head["1.weight"].T + head["1.bias"]
print([config["labels"][i] for i in logits.argmax(-1)])
```"""


def render_model_card(info: dict) -> str:
    """README.md text (YAML front matter + Markdown) for ``info``; see the module docstring."""
    sections = [
        "\n".join(_summary(info)),
        "\n".join(_evaluation(info)),
        "\n".join(_data(info)),
        "\n".join(_training(info)),
        _USE_AND_LIMITS,
        _how_to(info),
    ]
    return _front_matter(info) + "\n" + "\n\n".join(s for s in sections if s) + "\n"
