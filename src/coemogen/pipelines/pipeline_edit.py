"""`CoEmoGenEditPipeline`: make a user's own image evoke an emotion, keeping it their image.

A trained run already holds what an edit needs: the emotion's condition (a placeholder embedding
sampled from its cluster) and its HiLoRA adapters. Two ways in, as image-to-image pipelines do:

- `method="sdedit"` (SDEdit, Meng et al. 2022): encode the source, noise it to `strength` of the
  schedule, denoise under the emotion's condition;
- `method="inversion"`: run DDIM backwards from the source under the neutral condition (the
  template without the emotion, no adapters) to the same noise level, then denoise with DDIM under
  the emotion's condition: the noise is the source's own, so more of its structure survives at a
  given strength.

`strength` 0 returns the source through the VAE; 1 generates from scratch (SDEdit). Each image is
edited at the model's resolution with its aspect ratio kept (shorter side = the resolution, the
longer one rounded to what the U-Net divides), and brought back to its own size unless
`restore_size=False`.
"""

from __future__ import annotations

import torch
from PIL import Image

from ..errors import CoEmoGenError
from ..models.conditioning import PLACEHOLDER
from ..models.configs import DEFAULT_EDIT_STEPS, EDIT_METHODS
from ..taxonomy import Taxonomy
from .pipeline_coemogen import OUTPUT_TYPES, CoEmoGenOutput, CoEmoGenPipeline


class CoEmoGenEditPipeline(CoEmoGenPipeline):
    """Edit images toward an emotion (or a mix) with a trained run; `from_pretrained` as the
    generation pipeline (default: the shipped synthetic-world run).

    Examples:
        >>> from PIL import Image
        >>> from coemogen.pipelines.pipeline_edit import CoEmoGenEditPipeline
        >>> pipe = CoEmoGenEditPipeline.from_pretrained(device="cpu")
        >>> source = Image.new("RGB", (96, 64), (200, 180, 40))
        >>> out = pipe(source, "fear", strength=0.5, num_inference_steps=4, seed=0)
        >>> out.images[0].size, out.metadata[0]["method"], out.metadata[0]["strength"]
        ((96, 64), 'sdedit', 0.5)
    """

    def edit_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) an image of `size` is edited at: the shorter side at the model's
        resolution, the longer one rounded to a multiple of what the VAE and the U-Net divide by."""
        unet = self.base.unet
        multiple = self.base.vae_scale_factor * 2 ** (len(unet.config.block_out_channels) - 1)
        resolution = self.base.default_resolution
        w, h = size
        scale = resolution / min(w, h)
        return tuple(max(multiple, round(side * scale / multiple) * multiple) for side in (w, h))

    @torch.no_grad()
    def encode(self, image: Image.Image) -> torch.Tensor:
        """A source image as scaled VAE latents (the posterior mean: the edit is deterministic)."""
        import numpy as np

        vae = self.base.vae
        # in [-1, 1] straight from the bytes (the committed edit figures were made this way, bit for bit)
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
        latents = vae.encode(x[None].to(self.device, vae.dtype)).latent_dist.mean
        return latents * vae.config.scaling_factor

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, neutral, num_inference_steps: int, steps: int) -> torch.Tensor:
        """DDIM inversion: `steps` steps up the schedule of `num_inference_steps` under the neutral
        condition, without guidance or adapters."""
        from diffusers import DDIMInverseScheduler

        inverse = DDIMInverseScheduler.from_config(self.base.noise_scheduler.config)
        inverse.set_timesteps(num_inference_steps, device=latents.device)
        size = tuple(d * self.base.vae_scale_factor for d in latents.shape[-2:])
        time_ids = self.time_ids(len(latents), size)
        time_ids = None if time_ids is None else time_ids.to(latents.device)
        for t in inverse.timesteps[:steps]:
            eps = self.base.unet(latents, t, **self.base.family.unet_kwargs(neutral, time_ids)).sample
            latents = inverse.step(eps, t, latents).prev_sample
        return latents

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | list[Image.Image],
        emotion: str | list[str] | None,
        strength: float = 0.6,
        method: str = "sdedit",
        seed: int = 0,
        seeds: list[int] | None = None,
        generator: list[torch.Generator] | None = None,
        template: str | None = None,
        num_inference_steps: int = DEFAULT_EDIT_STEPS,
        guidance_scale: float = 5.0,
        cluster_temperature: float | None = None,
        output_type: str = "pil",
        restore_size: bool = True,
        merge_adapters: bool = True,
        va: tuple[float, float] | list[tuple[float, float]] | None = None,
        va_temperature: float = 1.0,
        va_anchors: Taxonomy | None = None,
    ) -> CoEmoGenOutput:
        """Edit each image toward its emotion (`emotion`: a name or mix for all, or one per image;
        None: the neutral condition without adapters, a reconstruction). Image i draws its cluster
        sample and its SDEdit noise from generators seeded `seed + i` (or `seeds[i]`; `generator`:
        one per image, as in generation). `merge_adapters=False` keeps the adapters per sample, for a
        pipeline other threads use at the same time (the web app). Returns the edits and one metadata
        dict per image. `va`: a valence/arousal point (or one per image) instead of `emotion`, as in
        generation (`CoEmoGenPipeline.__call__`)."""
        # 1. Check inputs.
        images = [image] if isinstance(image, Image.Image) else list(image)
        if not images:
            raise CoEmoGenError("no image to edit")
        intensities = points = None
        if va is not None:
            if emotion is not None:
                raise CoEmoGenError("pass an emotion or a valence/arousal point (va), not both")
            emotion, intensities, points = self.va_conditions(va, va_anchors, va_temperature)
            if len(emotion) == 1:
                emotion, intensities, points = emotion * len(images), intensities * len(images), points * len(images)
        specs = emotion if isinstance(emotion, list) else [emotion] * len(images)
        if len(specs) != len(images):
            raise CoEmoGenError(f"got {len(specs)} emotions for {len(images)} images; give one, or one per image")
        if method not in EDIT_METHODS:
            raise CoEmoGenError(f"unknown edit method '{method}'; choose one of {', '.join(EDIT_METHODS)}")
        if not 0 <= strength <= 1:
            raise CoEmoGenError(f"strength must be in [0, 1], got {strength}")
        if output_type not in OUTPUT_TYPES:
            raise CoEmoGenError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, not '{output_type}'")
        template = template or self.model.config.template
        self.check_inputs(specs, len(images), template, num_inference_steps, guidance_scale, None, None)
        if self.clusters is None:
            raise CoEmoGenError("this pipeline has no emotion clusters to sample the emotion's condition from")
        if seeds is not None and len(seeds) != len(images):
            raise CoEmoGenError(f"pass one seed per image ({len(images)})")
        if generator is not None and len(generator) != len(images):
            raise CoEmoGenError(f"pass one generator per image ({len(images)})")
        if cluster_temperature is None:
            cluster_temperature = self.model.config.cluster_temperature
        image_seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(images))]
        dtype = self.base.unet.dtype
        uncond = self.base.family.unconditional(self.conditioner.encode_text([""])).to(self.device, dtype)
        neutral = self.conditioner.encode_text([template.replace(PLACEHOLDER, "").strip()]).to(self.device, dtype)
        init_steps = min(int(num_inference_steps * strength), num_inference_steps)
        start = num_inference_steps - init_steps
        edits, metadata = [], []
        for i, (source, spec) in enumerate(zip(images, specs)):
            g = generator[i] if generator is not None else torch.Generator().manual_seed(image_seeds[i])
            # 2. The source at the model's resolution, encoded.
            source = source.convert("RGB")
            latents = self.encode(source.resize(self.edit_size(source.size), Image.LANCZOS))
            # 3. The emotion's condition and adapters (the neutral condition and none for None).
            if spec is None:
                mix, cond, gates, component = None, neutral, None, None
            else:
                mix = self.taxonomy.mix(spec)
                samples, components = self.sample_visual_embeddings([mix], [g], cluster_temperature)
                if intensities is not None:
                    samples = self.intensify(samples, torch.tensor([intensities[i]]))
                ev = self.model.token_embeddings(samples)
                cond = self.conditioner.encode_embeddings(ev.to(self.device, dtype), template)
                gates = self.model.gates(self.taxonomy.weights([mix]).to(self.device))
                if gates is not None and intensities is not None:
                    gates = gates * intensities[i]
                component = components[0]
            # 4. Noise the source to the start of the schedule's last `init_steps` steps, 5. denoise.
            if init_steps > 0:
                if method == "inversion":
                    from diffusers import DDIMScheduler

                    scheduler = DDIMScheduler.from_config(self.base.noise_scheduler.config)
                    latents = self.invert(latents, neutral, num_inference_steps, init_steps)
                else:
                    scheduler = type(self.scheduler).from_config(self.scheduler.config)
                    scheduler.set_timesteps(num_inference_steps, device=latents.device)
                    if hasattr(scheduler, "set_begin_index"):
                        scheduler.set_begin_index(start * scheduler.order)
                    noise = torch.randn(latents.shape, generator=g).to(latents)
                    t0 = scheduler.timesteps[start * scheduler.order : start * scheduler.order + 1]
                    latents = scheduler.add_noise(latents, noise, t0)
                latents = self.denoise(
                    scheduler, latents.to(dtype), cond, uncond, gates, num_inference_steps, guidance_scale,
                    merge_adapters=merge_adapters, start_step=start,
                )  # fmt: skip
            # 6. Decode, and back to the source's size.
            decoded = latents if output_type == "latent" else self.decode(latents)
            out = self.postprocess(decoded, output_type)
            if output_type == "pil" and restore_size:
                out = [im.resize(source.size, Image.LANCZOS) for im in out]
            edits.append(out)
            metadata.append(
                {
                    "index": i,
                    "emotion": "neutral" if mix is None else max(mix, key=mix.get),
                    "weights": mix,
                    "method": method,
                    "strength": strength,
                    "seed": image_seeds[i] if generator is None else None,
                    "cluster_component": component,
                    "template": template,
                    "num_inference_steps": num_inference_steps,
                    "guidance_scale": guidance_scale,
                    "cluster_temperature": cluster_temperature,
                    "source_size": list(source.size),
                    **({} if points is None else {"va": list(points[i]), "intensity": intensities[i]}),
                }
            )
        if output_type == "pil":
            return CoEmoGenOutput([im for batch in edits for im in batch], metadata)
        return CoEmoGenOutput(edits, metadata)  # one array or tensor per image: sizes may differ
