"""The Hugging Face model card (`README.md`) and the short usage file (`USAGE.md`) of an export.

The card's YAML front matter comes from `huggingface_hub.ModelCardData` (it works offline); the
body says what the emotion is, the prompt to use, which file serves which tool, and how the run
was trained, read from the run directory (`config.json`, `training_args.json`,
`data_summary.json`, the manifest's filter summary, the run's own README) and, when given, a
`coemogen evaluate` report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ..evaluation.metrics import PAPER_METRICS
from ..models.configs import DEFAULT_INFERENCE_STEPS
from ..models.families import FAMILIES, ModelFamily
from ..models.runs import RunConfig
from ..tables import format_table

TAGS = ["lora", "text-to-image", "stable-diffusion", "stable-diffusion-diffusers", "diffusers", "coemogen", "emotion"]
# Every Stable Diffusion 1.x checkpoint is under CreativeML OpenRAIL-M; the pocket SD is this package's own.
BASE_LICENSES = {"coemogen:pocket-sd": "apache-2.0"}
DEFAULT_LICENSE = "creativeml-openrail-m"
PAPER = "ICLR 2026, arXiv 2508.03535"


@dataclass
class ExportedEmotion:
    """One emotion (or mix) as written by `export_emotion`: the names a user types and the files."""

    name: str  # file stem and A1111 LoRA name: "awe", "fear70_sadness30"
    spec: str  # the normalised mix: "fear:0.7,sadness:0.3"
    description: str  # "awe (positive)", "fear 70% + sadness 30% (negative)"
    directory: Path
    rank: int  # 0: no LoRA (EmoGen)
    adapters: dict[str, float]  # HiLoRA adapter -> gate folded into the LoRA
    mean_token: str
    sample_tokens: list[str]
    prompt: str  # the run's template with the mean token in the placeholder
    temperature: float
    family: str = "sd"  # the base model's family (models/families/): file forms and loader code

    @property
    def model_family(self) -> type[ModelFamily]:
        return FAMILIES[self.family]


def method_name(config: RunConfig) -> str:
    return "EmoGen (CVPR 2024, as published; no LoRA)" if config.method == "emogen" else f"CoEmoGen ({PAPER})"


def default_license(config: RunConfig) -> str:
    return BASE_LICENSES.get(config.pretrained_model_name_or_path, DEFAULT_LICENSE)


def front_matter(config: RunConfig, license: str, instance_prompt: str | None = None) -> str:
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=config.pretrained_model_name_or_path,
        license=license,
        library_name="diffusers",
        tags=TAGS,
        **({"instance_prompt": instance_prompt} if instance_prompt else {}),
    )
    return f"---\n{data.to_yaml()}\n---\n"


def usage(item: ExportedEmotion, base_model: str) -> str:
    """The three ecosystems in a few lines each; paths are relative to the export folder."""
    from .embeddings import diffusers_embedding_dirs

    sample = item.sample_tokens[0] if item.sample_tokens else item.mean_token
    folder = item.name
    family = item.model_family
    pipeline_class = family.pipeline_class_names[0]
    imports, load_base = f"from diffusers import {pipeline_class}", f'"{base_model}"'
    if base_model in registry.model_aliases():  # e.g. the shipped pocket SD: a folder inside the package
        imports += "\nfrom coemogen.models.base import model_path"
        load_base = f'model_path("{base_model}")'
    lora = bool(item.rank)
    a1111 = f"copy `{folder}/{item.name}.safetensors` to `models/Lora/` and\n" if lora else "copy "
    comfy = (
        f"copy `{folder}/{item.name}.safetensors` to `models/loras/` (a LoraLoader node, strength 1)\nand "
        if lora
        else "copy "
    )
    load_lora = f'pipe.load_lora_weights("{folder}", weight_name="{item.name}.safetensors")\n' if lora else ""
    embedding_files = [f"{folder}/{d}/{item.mean_token}.safetensors" for d in diffusers_embedding_dirs(family)]
    if len(family.text_encoders) == 1:
        load_embeddings = f'pipe.load_textual_inversion("{embedding_files[0]}")'
    else:  # one call per text encoder, the same token in each
        load_embeddings = "\n".join(
            f'pipe.load_textual_inversion("{path}", token="{item.mean_token}", '
            f"text_encoder=pipe.{spec.subfolder}, tokenizer=pipe.{spec.tokenizer_subfolder})"
            for path, spec in zip(embedding_files, family.text_encoders)
        )
    return f"""\
Paths are relative to the export folder, the one that holds `{folder}/`.

**AUTOMATIC1111 / Forge**: {a1111}`{folder}/embeddings/{item.mean_token}.safetensors` to `embeddings/`, then prompt

    {f"<lora:{item.name}:1> " if lora else ""}{item.prompt}

**ComfyUI**: {comfy}`{folder}/embeddings/*.safetensors` to `models/embeddings/`, then prompt

    {item.prompt.replace(item.mean_token, "embedding:" + item.mean_token)}

**diffusers**:

```python
{imports}

pipe = {pipeline_class}.from_pretrained({load_base})
{load_lora}{load_embeddings}
image = pipe("{item.prompt}", guidance_scale=5.0).images[0]
```

Swap `{item.mean_token}` for a sampled embedding such as `{sample}` for variety. The package's own
images use DPM-Solver++ (`DPMSolverMultistepScheduler`), {DEFAULT_INFERENCE_STEPS} steps, guidance 5 and an
empty negative prompt; with these settings and the same seed, the files reproduce `coemogen generate`'s images.
"""


def training_section(run_dir: Path, config: RunConfig, metrics: dict | None, emotion: str | None) -> str:
    """How the run was made: base models, data, captioner, filter, training, clusters, and the
    metrics of a `coemogen evaluate` report (`emotion`'s row when the report has one, and overall)."""
    if config.method == "emogen":
        method = [
            f"- method: {method_name(config)}, configuration `{config.run_name}`; emotion encoder "
            f"`{config.emotion_encoder}` (emotion space of width {config.emotion_dim}), {config.emogen_mapper} mapper",
            f"- clusters: one diagonal Gaussian per emotion in the emotion space, sampled at temperature "
            f"{config.cluster_temperature:g} and mapped to the token",
        ]
    else:
        method = [
            f"- method: {method_name(config)}, configuration `{config.run_name}`; HiLoRA rank {config.lora_rank} "
            f"(alpha {config.lora_alpha:g}) on `{'`, `'.join(config.lora_targets)}`",
            f"- clusters: {config.cluster_components} diagonal Gaussian component(s) per emotion over the visual "
            f"embeddings, sampled at temperature {config.cluster_temperature:g}",
        ]
    lines = [
        method[0],
        f"- base models: `{config.pretrained_model_name_or_path}` (Stable Diffusion 1.x, frozen), "
        f"`{config.clip_model_name_or_path}` (CLIP, training only)",
        "- taxonomy: " + "; ".join(f"{g}: {', '.join(es)}" for g, es in config.taxonomy["groups"].items()),
        method[1],
    ]
    args = _read_json(run_dir / "training_args.json")
    if args:
        lines.append(
            f"- training: {args['max_train_steps']} steps, batch {args['train_batch_size']} x "
            f"{args['gradient_accumulation_steps']} accumulation, AdamW lr {args['learning_rate']:g}, "
            f"weight decay {args.get('adam_weight_decay', args.get('weight_decay')):g}, "
            + (f"lambda_SEM {args['lambda_sem']:g}, " if config.method == "coemogen" else "")
            + f"{args['mixed_precision']} precision, seed {args['seed']}, resolution {config.resolution}"
        )
        lines += _data_lines(Path(args["manifest"]), _read_json(run_dir / "data_summary.json"))
    sections = ["## How the run was trained\n\n", "\n".join(lines) + "\n"]
    if metrics:
        rows = [{"emotion": "overall", **metrics["overall"]}]
        if emotion in metrics.get("per_emotion", {}):
            rows.insert(0, {"emotion": emotion, **metrics["per_emotion"][emotion]})
        columns = ["emotion", *(m for m in PAPER_METRICS if m in metrics["overall"])]
        sections += ["\n## Metrics (`coemogen evaluate`)\n\n", format_table(rows, columns) + "\n"]
    notes = run_dir / "README.md"
    if notes.is_file():  # the shipped run documents its recipe and measurements there
        body = notes.read_text(encoding="utf-8").split("\n", 1)[-1].strip()
        sections += ["\n## Notes from the run\n\n", body + "\n"]
    return "".join(sections)


def _data_lines(manifest: Path, data_summary: dict | None) -> list[str]:
    lines = []
    if data_summary:
        per_emotion = ", ".join(f"{e} {n}" for e, n in data_summary["per_emotion"].items())
        lines.append(f"- data: {data_summary['records']} image-caption pairs from `{manifest.name}` ({per_emotion})")
    first = _first_record(manifest)
    if first and first.get("captioner"):
        lines.append(f"- captioner: `{first['captioner']}` (one sentence per image, told the emotion)")
    summary = _read_json(manifest.parent / f"{manifest.stem}.summary.json")
    if summary:
        lines.append(
            f"- CLIP filter: bottom {summary['drop']:.0%} per emotion dropped, {summary['kept']} of "
            f"{summary['scored']} pairs kept"
        )
    return lines


def emotion_card(
    item: ExportedEmotion, run_dir: Path, config: RunConfig, license: str, metrics: dict | None = None
) -> str:
    """The model card of one exported emotion (or mix)."""
    default = registry.default_run()
    shipped = default is not None and run_dir.resolve() == default.resolve()
    run = "CoEmoGen's shipped synthetic-world run" if shipped else f"the {method_name(config)} run `{run_dir.name}`"
    samples = ", ".join(f"`{t}`" for t in item.sample_tokens) or "no samples"
    embedding = (
        f"a **textual-inversion embedding**: the vector that takes the place of one prompt token.\n"
        f"  `{item.mean_token}` is the embedding of the emotion's cluster mean (of a mix: the weighted\n"
        f"  mean of its emotions'); {samples} are samples of the cluster at temperature {item.temperature:g},\n"
        f'  the ones `coemogen generate --emotion "{item.spec}" --seed k` draws for its first image.'
    )
    from .embeddings import diffusers_embedding_dirs

    specs = item.model_family.text_encoders
    keys = ", ".join(f'"{spec.ecosystem_name}": [1, d]' for spec in specs)
    files = [f"| `embeddings/<token>.safetensors` | embedding `{{{keys}}}` | A1111, Forge, ComfyUI |"]
    for folder, spec in zip(diffusers_embedding_dirs(item.model_family), specs):
        files.append(
            f"| `{folder}/<token>.safetensors` | embedding `{{token: [1, d]}}` for `{spec.subfolder}` "
            "| diffusers `load_textual_inversion` |"
        )
    if item.rank:
        adapters = " + ".join(f"`{a}` x {g:g}" for a, g in item.adapters.items())
        conditioning = f"""CoEmoGen ({PAPER}) conditions a frozen Stable Diffusion on two things; both are here as
standard files, without approximation:

- a **LoRA** on the U-Net: the HiLoRA adapters of the emotion and of its polarity group, each times its
  gate ({adapters}), summed into one rank-{item.rank} LoRA;
- {embedding}"""
        files = [
            f"| `{item.name}.safetensors` | LoRA, kohya keys (`lora_unet_*`), rank {item.rank} "
            "| A1111, ComfyUI, InvokeAI, diffusers |",
            "| `pytorch_lora_weights.safetensors` | LoRA, diffusers/peft keys (`unet.*.lora_A/B`) | diffusers, peft |",
            *files,
        ]
    else:
        conditioning = f"""EmoGen leaves Stable Diffusion untouched and conditions it on one token, so the emotion is
{embedding}"""
    lora_weight = "With the LoRA at weight 1. " if item.rank else ""
    table = "\n".join(["| file | format | for |", "|---|---|---|", *files])
    return f"""{front_matter(config, license, item.prompt)}
# {method_name(config).split(" ")[0]}: {item.description}

Images that evoke **{item.description}**, from {run} on `{config.pretrained_model_name_or_path}`.
{conditioning}

## Prompt

    {item.prompt}

{lora_weight}For emotion transfer put the token in your own prompt, e.g. `a photo of {item.mean_token} bag`.

## Files

{table}

## Usage

{usage(item, config.pretrained_model_name_or_path)}
{training_section(run_dir, config, metrics, item.spec)}"""


def index_card(
    items: list[ExportedEmotion], run_dir: Path, config: RunConfig, license: str, metrics: dict | None = None
) -> str:
    """The card at the root of an export (the page a Hub repository shows): one row per emotion."""
    rows = [
        {
            "emotion": item.description,
            "folder": f"[{item.name}/]({item.name}/README.md)",
            "prompt": f"`{f'<lora:{item.name}:1> ' if item.rank else ''}{item.prompt}`",
            "LoRA rank": item.rank,
        }
        for item in items
    ]
    first = items[0]
    holds = (
        "a LoRA (the emotion's HiLoRA adapter plus its polarity group's) and textual-inversion\nembeddings"
        if first.rank
        else "textual-inversion embeddings"
    )
    return f"""{front_matter(config, license)}
# {method_name(config).split(" ")[0]} emotions

{len(items)} emotion(s) exported from a {method_name(config)} run on `{config.pretrained_model_name_or_path}`:
each folder holds {holds} of the emotion's cluster (mean and samples), in the formats A1111, ComfyUI and diffusers load.

{format_table(rows, ["emotion", "folder", "prompt", "LoRA rank"])}

## Usage ({first.name}; the other folders alike)

{usage(first, config.pretrained_model_name_or_path)}
{training_section(run_dir, config, metrics, None)}"""


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _first_record(manifest: Path) -> dict | None:
    if not manifest.is_file():
        return None
    with open(manifest, encoding="utf-8") as f:
        line = f.readline()
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
