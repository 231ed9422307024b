"""`coemogen export`: a trained run's emotions as files that diffusers, A1111 and ComfyUI load.

One folder per emotion (or mix) under the export root, plus a root model card:

    awe/
      awe.safetensors                   LoRA, kohya keys (A1111, Forge, ComfyUI, InvokeAI, diffusers)
      pytorch_lora_weights.safetensors  LoRA, diffusers/peft keys
      embeddings/awe_mean.safetensors   embedding, A1111 form; also awe_seed0, awe_seed1, ...
      learned_embeds/awe_mean.safetensors  embedding, diffusers form; the same tokens (SDXL: clip_l + clip_g
                                        in embeddings/, and learned_embeds_2/ for the second text encoder)
      README.md, USAGE.md               model card, usage in the three ecosystems

An EmoGen run (no adapters: its U-Net is the base model's) exports the embeddings only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import CoEmoGenError
from ..models.runs import run_or_default
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from .card import ExportedEmotion, default_license, emotion_card, index_card, usage
from .embeddings import cluster_mean, save_embedding
from .lora import save_kohya_lora, save_peft_lora, unet_lora_factors


def export_name(mix: dict[str, float]) -> str:
    """A file stem and prompt word for a mix: "awe"; "fear70_sadness30" for a mix (percent weights)."""

    def slug(emotion: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", emotion.lower()).strip("-")

    if len(mix) == 1:
        return slug(next(iter(mix)))
    return "_".join(f"{slug(e)}{round(w * 100)}" for e, w in mix.items())


def mix_spec(mix: dict[str, float]) -> str:
    """The normalised mix as `coemogen generate --emotion` takes it: "awe", "fear:0.7,sadness:0.3"."""
    return next(iter(mix)) if len(mix) == 1 else ",".join(f"{e}:{w:g}" for e, w in mix.items())


def describe_mix(pipeline: CoEmoGenPipeline, mix: dict[str, float]) -> str:
    """The emotions and their groups, for people: "awe (positive)", "fear 70% + sadness 30% (negative)"."""
    taxonomy = pipeline.taxonomy
    emotions = next(iter(mix)) if len(mix) == 1 else " + ".join(f"{e} {w:.0%}" for e, w in mix.items())
    groups = dict.fromkeys(taxonomy.group_of(e) for e in mix)
    return f"{emotions} ({' + '.join(groups)})"


def adapter_names(pipeline: CoEmoGenPipeline) -> list[str]:
    """The HiLoRA adapters in gate order: the emotions', then the groups' (or the one shared adapter)."""
    taxonomy = pipeline.taxonomy
    if not pipeline.model.has_adapters:
        return []
    if pipeline.model.config.shared_lora:
        return ["shared"]
    return [*taxonomy.emotions, *taxonomy.group_names]


def va_name(point: tuple[float, float]) -> str:
    """A file stem and prompt word for a valence/arousal point: "va_v+1p5_a-0p5"."""
    return "va_" + "_".join(f"{k}{x:+g}".replace(".", "p") for k, x in zip("va", point))


def export_emotion(
    pipeline: CoEmoGenPipeline,
    spec: str | dict[str, float],
    out: str | Path,
    num_embeddings: int = 4,
    seed: int = 0,
    intensity: float = 1.0,
    name: str | None = None,
) -> ExportedEmotion:
    """Write one emotion's (or mix's) LoRA in both key formats (a method with adapters) and its
    embeddings in both forms into `out/<name>/`. Sample k is the embedding `coemogen generate --seed
    <seed + k>` draws for its first image (the run's cluster temperature); the mean token is the
    cluster mean's embedding. `intensity` (a valence/arousal point's) scales the gates and the
    embeddings' departure from the clusters' centre, as generation does."""
    if num_embeddings < 0:
        raise CoEmoGenError(f"--num-embeddings must be >= 0, got {num_embeddings}")
    if pipeline.clusters is None:
        raise CoEmoGenError("this run has no emotion clusters to export embeddings from")
    model, config = pipeline.model, pipeline.model.config
    mix = pipeline.taxonomy.mix(spec)
    name = name or export_name(mix)
    directory = Path(out) / name

    # The LoRA: the gate vector a batch of this mix uses, folded into plain LoRA factors.
    factors, rank, adapters = None, 0, {}
    if model.has_adapters:
        gate_row = model.gates(pipeline.taxonomy.weights([mix]))[0] * intensity
        factors = unet_lora_factors(pipeline.base.unet, gate_row)
        rank = next(iter(factors.values()))[0].shape[0]
        adapters = {a: round(g, 6) for a, g in zip(adapter_names(pipeline), gate_row.tolist()) if g}

    # The embeddings: the cluster mean and samples drawn exactly as the pipeline draws them, each
    # mapped to the token space as the pipeline maps them.
    temperature = config.cluster_temperature
    generators = [torch.Generator().manual_seed(seed + k) for k in range(num_embeddings)]
    samples = pipeline.sample_visual_embeddings([mix] * num_embeddings, generators, temperature)[0]
    mean = cluster_mean(pipeline.clusters, pipeline.taxonomy, mix)
    if intensity != 1.0:
        samples = pipeline.intensify(samples, torch.full((len(samples),), intensity))
        mean = pipeline.intensify(mean[None], torch.tensor([intensity]))[0]
    with torch.no_grad():
        vectors = model.token_embeddings(torch.cat([mean[None], samples])).cpu()
    mean_token = f"{name}_mean"
    sample_tokens = [f"{name}_seed{seed + k}" for k in range(num_embeddings)]
    item = ExportedEmotion(
        name=name,
        spec=mix_spec(mix),
        description=describe_mix(pipeline, mix),
        directory=directory,
        rank=rank,
        adapters=adapters,
        mean_token=mean_token,
        sample_tokens=sample_tokens,
        prompt=config.template.replace("{}", mean_token),
        temperature=temperature,
        family=pipeline.base.family.name,
    )
    base = pipeline.base
    widths = [encoder.config.hidden_size for encoder in base.text_encoders]
    for token, vector in zip([mean_token, *sample_tokens], vectors):
        save_embedding(vector, token, directory, base.family, widths)
    if factors is None:
        return item

    save_kohya_lora(
        factors,
        directory / f"{name}.safetensors",
        title=f"CoEmoGen {item.spec}",
        resolution=config.resolution,
        family=base.family,
        unet_config=base.unet.config,
        prediction_type=pipeline.base.noise_scheduler.config.get("prediction_type", "epsilon"),
        extra_metadata={
            "modelspec.trigger_phrase": item.prompt,
            "modelspec.description": f"CoEmoGen HiLoRA adapters {', '.join(adapters)} as one rank-{rank} LoRA",
            "coemogen.emotion": item.spec,
            "coemogen.adapters": json.dumps(adapters),
            "coemogen.base_model": config.pretrained_model_name_or_path,
        },
    )
    save_peft_lora(factors, directory, base.family)
    return item


def export_run(
    out: str | Path,
    run_dir: str | Path | None = None,
    emotions: list[str] | None = None,
    num_embeddings: int = 4,
    seed: int = 0,
    license: str | None = None,
    metrics: str | Path | None = None,
    pipeline: CoEmoGenPipeline | None = None,
    va: list[tuple[float, float]] | None = None,
    va_temperature: float = 1.0,
    va_anchors=None,
) -> list[ExportedEmotion]:
    """Export `emotions` (default: every emotion of the run, unless `va` points are given) of a run
    (default: the shipped one) into `out`, each with its model card and usage file, and a root card
    listing them.

    `metrics`: a `coemogen evaluate` metrics.json (or its folder) to quote in the cards;
    `pipeline`: the run already loaded (it must be `run_dir`'s); `va`: valence/arousal points, each
    exported as its mix folder (named `va_v..._a...`) at its intensity."""
    run_dir = run_or_default(run_dir)
    pipeline = pipeline or CoEmoGenPipeline.from_pretrained(run_dir, device="cpu")
    config = pipeline.model.config
    specs = emotions or ([] if va else list(pipeline.taxonomy.emotions))
    for spec in specs:  # fail on a bad name or point before writing anything
        pipeline.taxonomy.parse_mix(spec)
    jobs = [(spec, 1.0, None) for spec in specs]
    if va:
        mixes, intensities, points = pipeline.va_conditions(va, va_anchors, va_temperature)
        jobs += [(m, i, va_name(p)) for m, i, p in zip(mixes, intensities, points)]
    report = _read_metrics(Path(metrics)) if metrics else None
    license = license or default_license(config)
    out = Path(out)
    items = []
    for spec, intensity, name in jobs:
        item = export_emotion(pipeline, spec, out, num_embeddings, seed, intensity, name)
        (item.directory / "README.md").write_text(
            emotion_card(item, run_dir, config, license, report), encoding="utf-8"
        )
        (item.directory / "USAGE.md").write_text(
            f"# Using {item.name}\n\n{usage(item, config.pretrained_model_name_or_path)}", encoding="utf-8"
        )
        items.append(item)
    (out / "README.md").write_text(index_card(items, run_dir, config, license, report), encoding="utf-8")
    return items


def _read_metrics(path: Path) -> dict:
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise CoEmoGenError(f"metrics file not found: {path} (pass the metrics.json `coemogen evaluate` wrote)")
    report = json.loads(path.read_text(encoding="utf-8"))
    if "overall" not in report:
        raise CoEmoGenError(f"{path} is not a `coemogen evaluate` metrics.json (no 'overall' entry)")
    return report
