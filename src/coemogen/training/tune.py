"""Emotion reward tuning (`coemogen tune`): a method on the training engine (`loop.py`).

It starts from a trained run (`--init_from`, `coemogen tune --model`) and backpropagates an
emotion judge into it by truncated reward backpropagation (DRaFT-K, ReFL): each step draws the
batch's emotions (balanced, each sample its own HiLoRA adapters), samples the run's own condition
(its emotion clusters) and runs DDIM without gradients to the last K steps, then with them through
those K steps, the VAE decoder and the reward. Two guards against reward hacking, each with its own
weight: the anchor (the starting method's own loss on the manifest, every step: it stays a
diffusion model of the data) and a KL-style penalty (for Gaussian transitions of equal variance,
the KL between the tuned and the starting run's steps is proportional to the squared distance of
their noise predictions, taken at the K graph steps).

What learns: HiLoRA's adapters; with `--tune_encoders` also CoEmoGen's mapper and visual-perception
encoder (the reward then reaches them through each batch image's own e^v, and the clusters are
refitted); a method without adapters (EmoGen) tunes its mapper. The engine does the rest: AdamW
and its schedule, clipping, mixed precision, accelerate's processes, checkpoints and resuming.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CoEmoGenError
from ..io import read_safetensors
from ..models.clusters import EmotionClusters
from ..models.conditioning import PLACEHOLDER, TextCondition
from ..models.configs import TuneConfig
from ..models.runs import load_run_config
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..taxonomy import Taxonomy
from .config import TrainingArguments
from .loop import Method, MethodRun, get_method
from .rewards import EmotionReward, load_reward


@contextmanager
def reference_weights(params: dict[str, nn.Parameter], reference: dict[str, torch.Tensor]) -> Iterator[None]:
    """The starting run's values in place of the tuned parameters for the block (no gradients
    flow: callers run it under `torch.no_grad`)."""
    current = {name: p.data for name, p in params.items()}
    for name, p in params.items():
        p.data = reference[name]
    try:
        yield
    finally:
        for name, p in params.items():
            p.data = current[name]


class RewardTuningModule(nn.Module):
    """forward(batch, generator) -> the losses of one tuning step: the anchor (the starting method's
    module on the manifest batch), the emotion reward of images sampled for the batch's emotions
    with the graph kept through the last K steps, and the penalty on the noise prediction's drift.
    Called inside the batch's adapter selection (the engine's), which the sampler's U-Net calls use."""

    def __init__(
        self,
        anchor: nn.Module,
        pipeline: CoEmoGenPipeline,
        reward: EmotionReward | None,
        settings: TuneConfig,
        tuned: dict[str, nn.Parameter],
        batch_embeddings: Callable[[dict], torch.Tensor] | None,
        resolution: int,
    ) -> None:
        super().__init__()
        self.anchor, self.reward, self.settings = anchor, reward, settings
        self.size = (resolution, resolution)  # the images sampled and scored: the run's (the anchor's) resolution
        self.pipeline, self.model, self.tuned = pipeline, pipeline.model, tuned
        self.batch_embeddings = batch_embeddings
        self.reference = {name: p.detach().clone() for name, p in tuned.items()}  # the starting run's values
        self._uncond: TextCondition | None = None

    def condition(self, batch: dict, samples: torch.Tensor | None) -> TextCondition:
        """The placeholder condition of each sample: its cluster sample through the model's token
        map, or (tuned encoders) its own image's e^v."""
        ev = self.batch_embeddings(batch) if samples is None else self.model.token_embeddings(samples)
        pipe = self.pipeline
        return pipe.conditioner.encode_embeddings(ev.to(pipe.base.unet.dtype), self.model.config.template)

    def unconditional(self) -> TextCondition:
        if self._uncond is None:
            pipe = self.pipeline
            with torch.no_grad():
                empty = pipe.conditioner.encode_text([""])
            self._uncond = pipe.base.family.unconditional(empty).to(pipe.device, pipe.base.unet.dtype)
        return self._uncond

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        s = self.settings
        losses: dict[str, torch.Tensor] = {}
        total = None
        if s.anchor_weight > 0:  # first, so its random draws are those continued training would make
            anchor = self.anchor(batch, generator)
            losses["l_anchor"] = anchor["loss"]
            total = s.anchor_weight * anchor["loss"]
        if s.reward_weight > 0 or s.kl_weight > 0:
            sampled = self.sample_with_graph(batch, generator)
            loss = s.kl_weight * sampled["l_kl"]
            if s.reward_weight > 0:
                loss = loss - s.reward_weight * sampled["reward"].mean()
            total = loss if total is None else total + loss
            losses.update({k: v.mean() for k, v in sampled.items() if k not in ("images", "correct")})
            if "correct" in sampled:
                losses["reward_accuracy"] = sampled["correct"].float().mean()
        losses["loss"] = total
        return losses

    def sample_with_graph(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """DRaFT-K: DDIM without gradients to step N - K, then K steps with their graph, decode and
        score. Draws (cluster samples, then the initial noise) come from `generator`."""
        from diffusers import DDIMScheduler

        s, pipe = self.settings, self.pipeline
        labels = batch["labels"]
        samples = None
        if self.batch_embeddings is None:
            temperature = self.model.config.cluster_temperature
            clusters = pipe.clusters
            samples = torch.stack([clusters.sample(int(e), generator, temperature)[0] for e in labels])
            samples = samples.to(pipe.device)
        noise = pipe.prepare_latents([generator] * len(labels), pipe.base.unet.dtype, self.size)
        cond, uncond = self.condition(batch, samples), self.unconditional()
        scheduler = DDIMScheduler.from_config(pipe.base.noise_scheduler.config)
        stop = s.num_inference_steps - s.truncation_steps
        with torch.no_grad():  # gates None: the engine's selection of the batch's adapters applies
            latents = pipe.denoise(
                scheduler, noise, cond, uncond, None, s.num_inference_steps, s.guidance_scale, stop_step=stop,
                merge_adapters=False,
            )  # fmt: skip
        if s.kl_weight > 0:
            with torch.no_grad(), reference_weights(self.tuned, self.reference):
                reference_cond = self.condition(batch, samples)
        time_ids = pipe.guidance_time_ids(len(labels), s.guidance_scale, latents.device, self.size)
        drift = []
        for t in scheduler.timesteps[stop * scheduler.order :]:
            if s.kl_weight > 0:
                with torch.no_grad(), reference_weights(self.tuned, self.reference):
                    ref = pipe.noise_prediction(
                        scheduler, latents.detach(), t, reference_cond, uncond, s.guidance_scale, time_ids
                    )
            pred = pipe.noise_prediction(scheduler, latents, t, cond, uncond, s.guidance_scale, time_ids)
            if s.kl_weight > 0:
                drift.append(F.mse_loss(pred.float(), ref.float()))
            latents = scheduler.step(pred, t, latents).prev_sample
        out = {"l_kl": torch.stack(drift).mean() if drift else latents.new_zeros(())}
        if s.reward_weight > 0:
            images = ((pipe.decode(latents).float() + 1) / 2).clamp(0, 1)
            names = [self.model.taxonomy.emotions[int(e)] for e in labels]
            prompts = [self.model.config.template.replace(PLACEHOLDER, name) for name in names]
            out.update(self.reward(images, labels.to(images.device), prompts))
        return out


def tuned_parameters(run: MethodRun, tune_encoders: bool) -> dict[str, nn.Parameter]:
    """What tuning updates: the U-Net adapters ("unet." parameters), and the model's own networks
    with `tune_encoders` or when the method has no adapters (EmoGen's mapper)."""
    return {
        name: p
        for name, p in run.params.items()
        if name.startswith("unet.") or tune_encoders or not run.model.has_adapters
    }


class TuneMethod(Method):
    """Reward tuning of a trained run (`--init_from`), on that run's own method's model, data and loss."""

    name = "tune"
    config_class = TuneConfig

    def build(self, args: TrainingArguments, taxonomy: Taxonomy, accelerator, hyperparameters: dict) -> MethodRun:
        settings = TuneConfig(**hyperparameters)
        if not args.init_from:
            raise CoEmoGenError("reward tuning starts from a trained run: pass --model (--init_from) RUN")
        start = load_run_config(args.init_from)
        if start.method == self.name or start.method not in ("coemogen", "emogen"):
            raise CoEmoGenError(f"run '{args.init_from}' records method '{start.method}', which tune cannot start from")
        # The starting method builds its model (its weights loaded from the run), data and loss: the anchor.
        run = get_method(start.method).build(replace(args, method=start.method), taxonomy, accelerator, {})
        tuned = tuned_parameters(run, settings.tune_encoders)
        for name, p in run.params.items():
            p.requires_grad_(name in tuned)
        device = accelerator.device
        clusters = EmotionClusters.from_state_dict(
            read_safetensors(Path(args.init_from) / "clusters.safetensors", what=f"run '{args.init_from}'")
        )
        pipeline = CoEmoGenPipeline(run.base, run.model, clusters, device)
        reward = None
        if settings.reward_weight > 0:
            reward = load_reward(
                settings.reward_model, start.pretrained_model_name_or_path, taxonomy, settings.reward_shaping,
                settings.quality_model, settings.quality_weight,
            ).to(device)  # fmt: skip
        if args.gradient_checkpointing and hasattr(run.base.vae, "enable_gradient_checkpointing"):
            run.base.vae.enable_gradient_checkpointing()  # the decoder's backward, at full resolution
        batch_embeddings = None
        if settings.tune_encoders and run.model.has_adapters:
            batch_embeddings = run.module.batch_embeddings
        record = {
            "starting_run": str(Path(args.init_from).resolve()),
            "starting_method": start.method,
            "reward": None if reward is None else reward.name,
            "quality_model": settings.quality_model,
            "sampler": "ddim",
            "tuned": sorted(
                {"hilora" if n.startswith("unet.") else n.removeprefix("model.").split(".")[0] for n in tuned}
            ),
            **asdict(settings),
            **{k: getattr(args, k) for k in ("max_train_steps", "train_batch_size", "learning_rate", "seed")},
            "resolution": run.model.config.resolution,
            "previous_tuning": start.tuning,
        }

        def finalise(out: Path) -> None:
            run.model.config.tuning = record
            run.finalise(out)

        return replace(
            run,
            params=tuned,
            module=RewardTuningModule(
                run.module, pipeline, reward, settings, tuned, batch_embeddings, run.model.config.resolution
            ),
            finalise=finalise,
            extra_records={**run.extra_records, "tuning.json": json.dumps(record, indent=1)},
        )


def tune(manifest: str | Path, out: str | Path, model: str | Path | None = None, **options) -> Path:
    """Tune the trained run `model` (default: the shipped run, as `generate`) toward its emotion
    reward on `manifest` (the anchor's data; its emotions are what each step samples), writing an
    ordinary run to `out`. `options`: `TrainingArguments` fields (tuning's defaults in
    `TUNE_TRAINING_DEFAULTS`) and `TuneConfig` fields. Returns the run directory.

    Examples:
        >>> import tempfile
        >>> from coemogen.world.dataset import build_world, read_truth
        >>> from coemogen.world.scenes import describe
        >>> world = build_world(tempfile.mkdtemp(), images_per_emotion=2, seed=0, size=64)
        >>> records = [{"image": p, "emotion": s.emotion, "caption": describe(s)} for p, s in read_truth(world).items()]
        >>> _ = (world / "manifest.jsonl").write_text("\\n".join(map(json.dumps, records)))
        >>> run = tune(world / "manifest.jsonl", tempfile.mkdtemp(), max_train_steps=1, train_batch_size=2,
        ...            num_inference_steps=2, validation_steps=0, report_to="none")  # doctest: +ELLIPSIS
        >>> json.loads((run / "config.json").read_text())["tuning"]["reward_shaping"]
        'polarity'
    """
    from dataclasses import fields

    from ..models.runs import run_or_default
    from .config import TUNE_TRAINING_DEFAULTS
    from .loop import train

    settings = {f.name for f in fields(TuneConfig)}
    training = {f.name for f in fields(TrainingArguments)} - {"manifest", "out", "method", "init_from"}
    unknown = set(options) - settings - training
    if unknown:
        raise CoEmoGenError(f"tune has no option {', '.join(sorted(unknown))}")
    args = TrainingArguments(
        manifest=str(manifest),
        out=str(out),
        method=TuneMethod.name,
        init_from=str(run_or_default(model)),
        **{**TUNE_TRAINING_DEFAULTS, **{k: v for k, v in options.items() if k in training}},
    )
    return train(args, **{k: v for k, v in options.items() if k in settings})
