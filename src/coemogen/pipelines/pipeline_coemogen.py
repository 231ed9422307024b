"""CoEmoGenPipeline: emotion (or mix) -> images, on the diffusers pipeline contract.

`__call__` reads top to bottom in numbered steps: check inputs, parse the emotions, sample visual
embeddings from the emotion clusters, encode them through the frozen text encoder, prepare the
initial latents, denoise with classifier-free guidance under each sample's HiLoRA adapters, decode.
Inference needs no CLIP model: the clusters already live in the text encoder's token space.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CoEmoGenError
from ..models.base import BaseModels, load_base_models
from ..models.clusters import EmotionClusters
from ..models.coemogen import CoEmoGen
from ..models.conditioning import PLACEHOLDER, EmotionConditioner, TextCondition, check_template
from ..models.configs import DEFAULT_INFERENCE_STEPS
from ..models.emogen import EmoGen
from ..models.hilora import adapter_weights
from ..models.runs import load_method_run, load_run_config, run_or_default
from ..taxonomy import Taxonomy

# DPM-Solver++ at 15 steps judges as well as at 25 in the synthetic world (docs/world-run/steps.md).

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "ddpm": "DDPMScheduler",
}


def make_scheduler(name: str, base_scheduler_config):
    import diffusers

    if name not in SCHEDULERS:
        raise CoEmoGenError(f"unknown scheduler '{name}'; choose from {', '.join(SCHEDULERS)}")
    return getattr(diffusers, SCHEDULERS[name]).from_config(base_scheduler_config)


def base_pipeline(source: str | Path):
    """The plain base model as its family's diffusers pipeline (StableDiffusionPipeline,
    StableDiffusionXLPipeline) with the DPM-Solver++ scheduler `coemogen generate` uses: the
    baselines' and the transfer evaluation's reference images."""
    import inspect

    from ..models.base import model_index, model_path
    from ..models.families import family_for

    source = model_path(source)
    pipeline_class = family_for(model_index(source), f"'{source}'").diffusers_pipeline_class()
    no_checker = {"safety_checker": None, "requires_safety_checker": False}
    kwargs = no_checker if "safety_checker" in inspect.signature(pipeline_class.__init__).parameters else {}
    pipe = pipeline_class.from_pretrained(str(source), **kwargs)
    pipe.scheduler = make_scheduler("dpm", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class CoEmoGenOutput:
    """`images`: PIL images, or (`output_type`) a float array / tensor in [0, 1] (N, H, W, C) /
    (N, C, H, W), or the final latents; `metadata`: one dict per image (its emotion mix, seed, ...)."""

    images: list[Image.Image] | np.ndarray | torch.Tensor
    metadata: list[dict]


OUTPUT_TYPES = ("pil", "np", "pt", "latent")


WINDOW_LEVELS = ("all", "emotion", "group")


@dataclass(frozen=True)
class EmotionWindow:
    """The denoising steps [start, stop) of T that carry the emotion (`coemogen analyze timesteps`).

    `level="all"`: inside the window the emotion condition and every adapter, outside it a neutral
    condition (the template without the placeholder) and no adapters. `level="emotion"` or
    `"group"`: only that HiLoRA level (the emotion-specific or the polarity-shared LoRAs) is switched;
    the condition and the other level stay on at every step.
    """

    start: int
    stop: int
    level: str = "all"

    def __post_init__(self) -> None:
        if self.level not in WINDOW_LEVELS:
            raise CoEmoGenError(f"unknown window level '{self.level}'; choose one of {list(WINDOW_LEVELS)}")
        if not 0 <= self.start <= self.stop:
            raise CoEmoGenError(f"an emotion window needs 0 <= start <= stop, got [{self.start}, {self.stop})")

    def step_conditions(
        self, cond: TextCondition, neutral: TextCondition, gates: torch.Tensor | None, model
    ) -> Callable[[int], tuple[TextCondition, torch.Tensor | None]]:
        """step index -> (condition, gates) of that step; `gates` None: a method without adapters.
        The model says which gates form a level (`gates_without_level`): the pipeline knows no layout."""
        outside = None if gates is None else torch.zeros_like(gates)
        if self.level != "all":  # switch one adapter level off outside the window
            outside = model.gates_without_level(gates, self.level)
        outside_cond = neutral.expand(len(cond)) if self.level == "all" else cond

        def at(step: int) -> tuple[TextCondition, torch.Tensor | None]:
            return (cond, gates) if self.start <= step < self.stop else (outside_cond, outside)

        return at


class CoEmoGenPipeline:
    """Generate emotion-evoking images from a trained run (the Python API behind `coemogen generate`).

    The run may be CoEmoGen's or EmoGen's (`models/runs.py`): the model turns cluster samples into
    placeholder embeddings (`token_embeddings`) and gives each sample's adapter gates (None for
    EmoGen, which has none). Built from in-memory modules (`CoEmoGenPipeline(base, model, clusters)`,
    as training does for its validation images) or from a run directory (`from_pretrained`).
    `clusters` may be None when every call passes `visual_embeds`.

    Example (the shipped synthetic-world run, offline):

    Examples:
        >>> from coemogen import CoEmoGenPipeline
        >>> pipe = CoEmoGenPipeline.from_pretrained(device="cpu")
        >>> out = pipe("fear:0.7,sadness:0.3", num_images=2, seed=0, num_inference_steps=4)
        >>> len(out.images), out.images[0].size, out.metadata[1]["seed"]
        (2, (64, 64), 1)
    """

    def __init__(
        self,
        base: BaseModels,
        model: CoEmoGen | EmoGen,
        clusters: EmotionClusters | None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.base, self.model, self.clusters, self.device = base, model, clusters, torch.device(device)
        self.conditioner = EmotionConditioner(base)
        # the sampler, a component as in diffusers (replace it, or name another per call)
        self.scheduler = make_scheduler("dpm", base.noise_scheduler.config)

    @property
    def taxonomy(self) -> Taxonomy:
        return self.model.taxonomy

    @classmethod
    def from_pretrained(
        cls,
        run_dir: str | Path | None = None,
        pretrained_model_name_or_path: str | None = None,
        clip_model_name_or_path: str | None = None,
        device: str | None = None,
        taxonomy: Taxonomy | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> CoEmoGenPipeline:
        """Load a run directory (default: the shipped synthetic-world run) and its base models.

        The base models recorded in the run are used unless overridden (e.g. a local SD1.5 copy).
        `clip_model_name_or_path` is accepted for symmetry with training and recorded only:
        inference does not load CLIP.
        """
        run_dir = run_or_default(run_dir)
        if not run_dir.is_dir():
            raise CoEmoGenError(f"run directory not found: {run_dir}")
        config = load_run_config(run_dir)
        base = load_base_models(
            pretrained_model_name_or_path or config.pretrained_model_name_or_path,
            clip_model_name_or_path or config.clip_model_name_or_path,
            torch_dtype,
            load_clip=False,
            pretrained_vae_model_name_or_path=config.pretrained_vae_model_name_or_path,
        )
        model, clusters = load_method_run(run_dir, base.unet, config, taxonomy)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        for module in (base.unet, base.vae, *base.text_encoders, model):
            module.to(device)
        model.eval()
        return cls(base, model, clusters, device)

    def check_inputs(
        self,
        specs: list[str],
        num_images: int,
        template: str,
        num_inference_steps: int,
        guidance_scale: float,
        generator,
        visual_embeds: torch.Tensor | None,
    ) -> None:
        if num_images < 1:
            raise CoEmoGenError(f"num_images must be at least 1, got {num_images}")
        if not specs:
            raise CoEmoGenError("no emotion given")
        if num_inference_steps < 1:
            raise CoEmoGenError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if guidance_scale < 0:
            raise CoEmoGenError(f"guidance_scale must be >= 0, got {guidance_scale}")
        check_template(template)
        if isinstance(generator, list) and len(generator) != num_images:
            raise CoEmoGenError(f"got {len(generator)} generators for {num_images} images; pass one per image")
        if visual_embeds is None and self.clusters is None:
            raise CoEmoGenError("this pipeline has no emotion clusters; pass visual_embeds")
        if visual_embeds is not None and visual_embeds.shape != (num_images, self.model.config.embed_dim):
            raise CoEmoGenError(
                f"visual_embeds must be ({num_images}, {self.model.config.embed_dim}), got {tuple(visual_embeds.shape)}"
            )

    def sample_visual_embeddings(
        self, mixes: list[dict[str, float]], generators: list[torch.Generator], temperature: float = 1.0
    ) -> tuple[torch.Tensor, list[dict[str, int]]]:
        """One cluster-space vector per image (e^v for CoEmoGen, an emotion-space feature for EmoGen):
        for a mix, the weighted sum of samples from each emotion's cluster."""
        rows, components = [], []
        for mix, g in zip(mixes, generators):
            vec = torch.zeros(self.clusters.means.shape[-1])
            picked = {}
            for emotion, weight in mix.items():
                sample, component = self.clusters.sample(self.taxonomy.index(emotion), g, temperature)
                vec += weight * sample
                picked[emotion] = component
            rows.append(vec)
            components.append(picked)
        return torch.stack(rows), components

    def prepare_latents(
        self, generators: list[torch.Generator], dtype: torch.dtype, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Initial noise, one draw per image from its own generator (CPU, so results match across
        devices); `size` (height, width) in pixels: default the model's square resolution."""
        height, width = size or (self.base.default_resolution, self.base.default_resolution)
        factor = self.base.vae_scale_factor
        if height % factor or width % factor:
            raise CoEmoGenError(f"image size {height}x{width} is not a multiple of the VAE's factor {factor}")
        shape = (self.base.unet.config.in_channels, height // factor, width // factor)
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device, dtype)

    def time_ids(self, batch_size: int, size: tuple[int, int] | None = None) -> torch.Tensor | None:
        """The micro-conditions of generated images (SDXL: original size = target size, no crop);
        `size` (height, width): default the model's square resolution."""
        size = size or (self.base.default_resolution, self.base.default_resolution)
        sizes = torch.tensor([list(size)] * batch_size)
        return self.base.family.time_ids(sizes, torch.zeros_like(sizes), tuple(size))

    def guidance_time_ids(
        self, batch_size: int, guidance_scale: float, device: torch.device, size: tuple[int, int] | None = None
    ) -> torch.Tensor | None:
        """`time_ids` of a batch as `noise_prediction` takes them (doubled under guidance; None but for SDXL)."""
        time_ids = self.time_ids(batch_size, size)
        if time_ids is None:
            return None
        return (torch.cat([time_ids] * 2) if guidance_scale > 1 else time_ids).to(device)

    def noise_prediction(
        self,
        scheduler,
        latents: torch.Tensor,
        t: torch.Tensor,
        cond: TextCondition,
        uncond: TextCondition,
        guidance_scale: float,
        time_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """The U-Net's classifier-free guided prediction at timestep `t` (guidance above 1; both
        halves under the adapters selected around the call); `time_ids` from `guidance_time_ids`."""
        guided = guidance_scale > 1
        context = TextCondition.cat([uncond.expand(len(cond)), cond]) if guided else cond
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        pred = self.base.unet(model_in, t, **self.base.family.unet_kwargs(context, time_ids)).sample
        if guided:
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
        return pred

    def denoise(
        self,
        scheduler,
        latents: torch.Tensor,
        cond: TextCondition,
        uncond: TextCondition,
        gates: torch.Tensor | None,
        num_inference_steps: int,
        guidance_scale: float,
        progress: bool = False,
        step_conditions: Callable[[int], tuple[TextCondition, torch.Tensor | None]] | None = None,
        merge_adapters: bool = True,
        callback_on_step_end: Callable | None = None,
        start_step: int = 0,
        stop_step: int | None = None,
    ) -> torch.Tensor:
        """Classifier-free guided sampling; each sample's adapters apply to both guidance halves.

        When every step uses `cond` and `gates` and every sample shares one gate vector, the adapters
        are merged into the weights for the loop (the same maths, no LoRA cost per step) and
        unmerged afterwards. `step_conditions(i) -> (cond, gates)` changes them step by step
        (`EmotionWindow`); the adapters are then selected per step. `gates` None: no adapters.
        `merge_adapters=False` keeps them per sample (a pipeline several threads call at once).
        `start_step=k` starts at the k-th step from `latents` already noised to that step's level
        (image-to-image: SDEdit, or an inversion's end); `stop_step=k` stops before the k-th step
        (reward tuning runs the last steps itself, with their graph).
        """
        from tqdm import tqdm

        unet = self.base.unet
        scheduler.set_timesteps(num_inference_steps, device=latents.device)
        if start_step == 0:
            latents = latents * scheduler.init_noise_sigma
        elif hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start_step * scheduler.order)
        size = tuple(d * self.base.vae_scale_factor for d in latents.shape[-2:])  # SDXL's micro-conditions
        time_ids = self.guidance_time_ids(len(latents), guidance_scale, latents.device, size)

        def step(latents: torch.Tensor, t: torch.Tensor, cond: TextCondition) -> torch.Tensor:
            pred = self.noise_prediction(scheduler, latents, t, cond, uncond, guidance_scale, time_ids)
            return scheduler.step(pred, t, latents).prev_sample

        stop = None if stop_step is None else stop_step * scheduler.order
        timesteps = tqdm(
            scheduler.timesteps[start_step * scheduler.order : stop], desc="denoise", disable=not progress, leave=False
        )

        def adapters(gates: torch.Tensor | None):
            return nullcontext() if gates is None else adapter_weights(unet, gates, merge=merge_adapters)

        def after(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            if callback_on_step_end is None:
                return latents
            returned = callback_on_step_end(self, i, t, {"latents": latents})
            return latents if returned is None else returned.get("latents", latents)

        if step_conditions is None:
            with adapters(gates):
                for i, t in enumerate(timesteps):
                    latents = after(i, t, step(latents, t, cond))
            return latents
        for i, t in enumerate(timesteps):
            step_cond, step_gates = step_conditions(i)
            with adapters(step_gates):
                latents = after(i, t, step(latents, t, step_cond))
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] through the frozen VAE."""
        vae = self.base.vae
        return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample

    @staticmethod
    def postprocess(images: torch.Tensor, output_type: str = "pil"):
        """Decoded images in [-1, 1] (or latents, for "latent") as `output_type` asks: PIL images
        (8-bit, rounded), a float array (N, H, W, C) or tensor (N, C, H, W) in [0, 1], or as they are."""
        if output_type == "latent":
            return images
        if output_type == "pt":
            return (images.float().clamp(-1, 1) + 1) / 2
        if output_type == "np":
            return ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def va_conditions(
        self, va, va_anchors: Taxonomy | None, temperature: float
    ) -> tuple[list[dict[str, float]], list[float], list[tuple[float, float]]]:
        """Valence/arousal points -> (each point's emotion mix, its intensity, the points), through the
        anchors of `va_anchors` (a taxonomy of the run's emotions) or of the run's taxonomy."""
        points = [va] if len(va) == 2 and not isinstance(va[0], (tuple, list)) else list(va)
        if not points:
            raise CoEmoGenError("no valence/arousal point given")
        anchors = va_anchors or self.taxonomy
        if va_anchors is not None and va_anchors != self.taxonomy:
            raise CoEmoGenError(
                f"the anchors' taxonomy {va_anchors.to_dict()['groups']} is not the run's "
                f"{self.taxonomy.to_dict()['groups']}"
            )
        mixed = anchors.va_mixes([tuple(p) for p in points], temperature)
        return [m for m, _ in mixed], [i for _, i in mixed], [tuple(map(float, p)) for p in points]

    def intensify(self, samples: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        """Cluster samples moved toward the clusters' centre (every emotion's mean, equally weighted)
        by intensity: 1 keeps them, 0 gives the centre."""
        centre = (self.clusters.weights.unsqueeze(-1) * self.clusters.means).sum(1).mean(0)
        scale = intensity.view(-1, 1).to(samples)
        return centre.to(samples) + scale * (samples - centre.to(samples))

    @torch.no_grad()
    def __call__(
        self,
        emotion: str | list[str] | None = None,
        num_images: int = 1,
        seed: int = 0,
        template: str | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        guidance_scale: float = 5.0,
        scheduler: str | None = None,
        batch_size: int = 16,
        progress: bool = False,
        cluster_temperature: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        visual_embeds: torch.Tensor | None = None,
        first_index: int = 0,
        emotion_window: EmotionWindow | None = None,
        seeds: list[int] | None = None,
        merge_adapters: bool = True,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[[CoEmoGenPipeline, int, torch.Tensor, dict], dict | None] | None = None,
        va: tuple[float, float] | list[tuple[float, float]] | None = None,
        va_temperature: float = 1.0,
        va_anchors: Taxonomy | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> CoEmoGenOutput:
        """`emotion`: a name, a mix "amusement:0.5,awe:0.5", or a list (one per image, cycled).

        Randomness: with `seed` alone, image i draws its cluster sample and its initial noise from
        two generators seeded seed + i, so an image does not depend on how many others are made
        with it. `generator` replaces them: a list with one per image (image i's cluster sample, then
        its noise), or one generator shared by all images (a batch's cluster samples, then its
        noises). `cluster_temperature` defaults to the run's. `visual_embeds` (num_images, d0)
        replaces the cluster samples (training's validation images use the embeddings of real images).
        `first_index=k` makes images k, k+1, ... of the same seeded sequence (resuming a large set).
        `emotion_window` restricts the emotion to some denoising steps (`EmotionWindow`). `seeds`: one
        seed per image instead of seed + i (several requests made in one batch keep their own images).
        `merge_adapters`: fold a batch's shared adapters into the U-Net while it denoises (the fastest
        for one caller); False keeps them per sample and leaves the weights untouched, so several
        threads can call one pipeline at once (each thread's adapter selection is its own).
        `scheduler`: a sampler name (`SCHEDULERS`) for this call; default: the pipeline's `scheduler`
        component. `latents` (num_images, C, h, w): the initial noise instead of the seeded draws.
        `output_type`: "pil" (default), "np", "pt" or "latent". `callback_on_step_end(pipe, step,
        timestep, {"latents": ...})` runs after every denoising step of every batch, as in diffusers;
        a dict it returns replaces the latents. `va`: a (valence, arousal) point in [-3, 3]^2, or one per
        image (cycled), instead of `emotion`: each becomes an emotion mix and an intensity through the
        taxonomy's anchors (`Taxonomy.va_mixes`, `va_temperature`; `va_anchors`: another table of the
        same emotions); the intensity scales the sample's departure from the clusters' centre and the
        adapters' gates. `height`, `width`: the images' size in pixels (default: the model's resolution;
        multiples of the VAE's factor; ignored with `latents`, whose size is the images').
        """
        # 1. Check inputs and fill defaults from the run's configuration.
        intensities = points = None
        if va is not None:
            if emotion is not None:
                raise CoEmoGenError("pass an emotion or a valence/arousal point (va), not both")
            if self.clusters is None:
                raise CoEmoGenError("a valence/arousal point needs the run's emotion clusters")
            specs, intensities, points = self.va_conditions(va, va_anchors, va_temperature)
        elif emotion is None:
            raise CoEmoGenError("no emotion given")
        else:
            specs = [emotion] if isinstance(emotion, str) else list(emotion)
        template = template or self.model.config.template
        self.check_inputs(specs, num_images, template, num_inference_steps, guidance_scale, generator, visual_embeds)
        if output_type not in OUTPUT_TYPES:
            raise CoEmoGenError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, not '{output_type}'")
        if latents is not None and latents.shape[0] != num_images:
            raise CoEmoGenError(f"latents hold {latents.shape[0]} images, not num_images={num_images}")
        if cluster_temperature is None:
            cluster_temperature = self.model.config.cluster_temperature
        if latents is not None:
            height, width = (d * self.base.vae_scale_factor for d in latents.shape[-2:])
        size = (height or self.base.default_resolution, width or self.base.default_resolution)
        # 2. Parse each image's emotion mix.
        indices = range(first_index, first_index + num_images)
        mixes = [self.taxonomy.mix(specs[i % len(specs)]) for i in indices]
        # 3. Per-image generators for the cluster samples and the initial noise.
        if seeds is not None and (len(seeds) != num_images or generator is not None):
            raise CoEmoGenError(f"pass one seed per image ({num_images}), and no generator with seeds")
        image_seeds = list(seeds) if seeds is not None else [seed + i for i in indices]
        if generator is None:
            cluster_generators = [torch.Generator().manual_seed(s) for s in image_seeds]
            noise_generators = [torch.Generator().manual_seed(s) for s in image_seeds]
        else:
            cluster_generators = noise_generators = (
                generator if isinstance(generator, list) else [generator] * num_images
            )
        # a fresh sampler per call: samplers keep state, and one pipeline may serve several threads
        sched = (
            make_scheduler(scheduler, self.base.noise_scheduler.config)
            if scheduler
            else (type(self.scheduler).from_config(self.scheduler.config))
        )
        scheduler_name = scheduler or next(
            (name for name, cls in SCHEDULERS.items() if cls == type(self.scheduler).__name__),
            type(self.scheduler).__name__,
        )
        dtype = self.base.unet.dtype
        uncond = self.base.family.unconditional(self.conditioner.encode_text([""])).to(self.device, dtype)
        if emotion_window is not None:
            if emotion_window.level != "all" and (not self.model.has_adapters or self.model.config.shared_lora):
                raise CoEmoGenError("this run has no emotion-specific or polarity-shared LoRA level to switch")
            neutral_prompt = template.replace(PLACEHOLDER, "").strip()
            neutral = self.conditioner.encode_text([neutral_prompt]).to(self.device, dtype)
        images, metadata = [], []
        for start in range(0, num_images, batch_size):
            idx = list(range(start, min(num_images, start + batch_size)))
            batch_mixes = [mixes[i] for i in idx]
            # 4. Placeholder embeddings: samples from the emotion clusters (or the given ones).
            if visual_embeds is None:
                samples, components = self.sample_visual_embeddings(
                    batch_mixes, [cluster_generators[i] for i in idx], cluster_temperature
                )
                if intensities is not None:
                    samples = self.intensify(
                        samples, torch.tensor([intensities[(first_index + i) % len(specs)] for i in idx])
                    )
                ev = self.model.token_embeddings(samples)
            else:
                ev, components = visual_embeds[idx].cpu(), [None] * len(idx)
            # 5. The condition: e^v in the placeholder slot through the frozen text encoder.
            cond = self.conditioner.encode_embeddings(ev.to(self.device, dtype), template)
            # 6. Each sample's HiLoRA adapters: its emotions' and their groups' (none for EmoGen).
            gates = self.model.gates(self.taxonomy.weights(batch_mixes).to(self.device))
            if gates is not None and intensities is not None:
                gates = gates * torch.tensor([intensities[(first_index + i) % len(specs)] for i in idx]).view(-1, 1).to(
                    gates
                )
            # 7. Initial latents.
            if latents is None:
                batch_latents = self.prepare_latents([noise_generators[i] for i in idx], dtype, size)
            else:
                batch_latents = latents[idx].to(self.device, dtype)
            # 8. Denoise with classifier-free guidance, then 9. decode.
            window = (
                None if emotion_window is None else emotion_window.step_conditions(cond, neutral, gates, self.model)
            )
            batch_latents = self.denoise(
                sched, batch_latents, cond, uncond, gates, num_inference_steps, guidance_scale, progress, window,
                merge_adapters, callback_on_step_end,
            )  # fmt: skip
            decoded = batch_latents if output_type == "latent" else self.decode(batch_latents)
            images.append(self.postprocess(decoded, output_type))
            for i, comp in zip(idx, components):
                metadata.append(
                    {
                        "index": first_index + i,
                        "emotion": max(mixes[i], key=mixes[i].get),
                        "weights": mixes[i],
                        "seed": image_seeds[i] if generator is None else None,
                        "cluster_component": comp,
                        "template": template,
                        "scheduler": scheduler_name,
                        "num_inference_steps": num_inference_steps,
                        "guidance_scale": guidance_scale,
                        "cluster_temperature": cluster_temperature,
                        "height": size[0],
                        "width": size[1],
                        **({} if emotion_window is None else {"emotion_window": vars(emotion_window)}),
                        **(
                            {}
                            if points is None
                            else {
                                "va": list(points[(first_index + i) % len(specs)]),
                                "intensity": intensities[(first_index + i) % len(specs)],
                                "va_temperature": va_temperature,
                            }
                        ),
                    }
                )
        if output_type == "pil":
            return CoEmoGenOutput([im for batch in images for im in batch], metadata)
        return CoEmoGenOutput(np.concatenate(images) if output_type == "np" else torch.cat(images), metadata)
