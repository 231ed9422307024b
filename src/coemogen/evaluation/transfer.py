"""`coemogen evaluate --transfer TEMPLATE`: emotion transfer, as EmoGen reports it.

The run's emotion embedding goes into the placeholder of a content template ("a photo of {} bag" for
SD 1.5; a world object in the synthetic world, e.g. "{} balloon"). Two measures per emotion and
overall: **content kept**, the CLIP image-text similarity of each transfer image to the content
prompt without the emotion (the template with its placeholder removed), and **emotion conveyed**,
Emo-A (and polarity accuracy) of the transfer images. For scale, the base model's own images of the
content prompt give the content similarity an image of that content reaches without any emotion.
Images are generated resumably into OUT/images/<emotion>/ and OUT/base/.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import registry
from ..data.images import image_grid, load_rgb, to_tensor
from ..errors import CoEmoGenError
from ..io import atomic_output, write_text
from ..models.base import model_path
from ..models.conditioning import PLACEHOLDER, check_template
from ..pipelines.folders import completed_indices, generate_to_folders, save_images
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline, base_pipeline
from ..tables import format_table
from .metrics import EmotionAccuracy, PolarityAccuracy


def content_prompt(template: str) -> str:
    """The template without its placeholder: "a photo of {} bag" -> "a photo of bag"."""
    return " ".join(check_template(template).replace(PLACEHOLDER, " ").split())


class ContentSimilarity:
    """CLIP image-text similarity of image files to one prompt (the model loaded once)."""

    def __init__(self, clip_source: str, prompt: str) -> None:
        from transformers import CLIPTokenizer

        from ..models.base import _load
        from .networks import ClipFeatures

        self.clip = ClipFeatures(clip_source)
        self.tokenizer = _load(CLIPTokenizer.from_pretrained, clip_source, "a CLIP tokenizer")
        self.prompt = prompt

    def __call__(self, paths: list[Path]) -> list[float]:
        from ..captioning.filtering import clip_scores

        scores, _ = clip_scores(
            self.clip.model, self.clip.preprocess, self.tokenizer, paths, [self.prompt] * len(paths)
        )
        return [float(s) for s in scores]


def evaluate_transfer(
    template: str,
    out: str | Path,
    model: str | Path | None = None,
    num_images: int = 8,
    seed: int = 0,
    num_inference_steps: int = 15,
    judge=None,
    device: str | None = None,
) -> dict:
    """Generate and score the transfer images of every emotion; write transfer.json, transfer.md
    and grid.png (one row per emotion, the base model's content images last). `judge`: an Emo-A
    network (default: the world's emotion judge, for runs on the pocket models)."""
    out = Path(out)
    prompt = content_prompt(template)
    pipe = CoEmoGenPipeline.from_pretrained(model, device=device)
    taxonomy = pipe.taxonomy
    config = pipe.model.config
    if judge is None:  # a registered client's judge for runs on its base model (the world's pocket SD)
        networks = registry.reference_networks(config.pretrained_model_name_or_path)
        if networks is None:
            raise CoEmoGenError("a transfer evaluation of a real-data run needs --emotion-classifier")
        judge = networks.emotion
    jobs = [(e, out / "images" / e) for e in taxonomy.emotions]
    generate_to_folders(pipe, jobs, num_images, seed=seed, template=template, num_inference_steps=num_inference_steps)
    base_dir = out / "base"
    if len(completed_indices(base_dir)) < num_images:
        images = base_pipeline(model_path(config.pretrained_model_name_or_path))(
            [prompt] * num_images,
            num_inference_steps=num_inference_steps,
            guidance_scale=5.0,
            generator=[torch.Generator().manual_seed(seed + i) for i in range(num_images)],
        ).images
        meta = [{"index": i, "emotion": "content", "seed": seed + i, "prompt": prompt} for i in range(num_images)]
        save_images(CoEmoGenOutput(images, meta), base_dir)
    content_similarity = ContentSimilarity(model_path(config.clip_model_name_or_path), prompt)
    groups = [taxonomy.group_index_of(e) for e in taxonomy.emotions]
    rows, grid = [], []
    overall = {"emo_a": EmotionAccuracy(), "polarity_acc": PolarityAccuracy(groups)}
    content_all = []
    for emotion, folder in jobs:
        paths = [p for _, p in sorted(completed_indices(folder).items())][:num_images]
        images = [load_rgb(p) for p in paths]
        grid += images
        logits = judge(torch.stack([to_tensor(im, judge.image_size) for im in images]))
        targets = torch.full((len(images),), taxonomy.index(emotion))
        emo_a, polarity = EmotionAccuracy(), PolarityAccuracy(groups)
        for metric in (emo_a, polarity, *overall.values()):
            metric.update(logits, targets)
        content = content_similarity(paths)
        content_all += content
        rows.append(
            {
                "emotion": emotion,
                "content kept": sum(content) / len(content),
                "Emo-A": emo_a.compute(),
                "polarity": polarity.compute(),
            }
        )
    base_paths = [p for _, p in sorted(completed_indices(base_dir).items())][:num_images]
    base_content = content_similarity(base_paths)
    grid += [load_rgb(p) for p in base_paths]
    summary = {
        "template": template,
        "content_prompt": prompt,
        "content_kept": sum(content_all) / len(content_all),
        "base_model_content": sum(base_content) / len(base_content),
        "emo_a": overall["emo_a"].compute(),
        "polarity_acc": overall["polarity_acc"].compute(),
        "num_images_per_emotion": num_images,
        "judge": judge.name,
        "clip": config.clip_model_name_or_path,
    }
    rows.append({"emotion": "overall", "content kept": summary["content_kept"], "Emo-A": summary["emo_a"],
                 "polarity": summary["polarity_acc"]})  # fmt: skip
    rows.append({"emotion": f"base model, '{prompt}'", "content kept": summary["base_model_content"], "Emo-A": "-",
                 "polarity": "-"})  # fmt: skip
    table = format_table(rows, ["emotion", "content kept", "Emo-A", "polarity"])
    write_text(out / "transfer.md", table + "\n")
    write_text(out / "transfer.json", json.dumps({"summary": summary, "per_emotion": rows[:-2]}, indent=1))
    with atomic_output(out / "grid.png") as tmp:
        image_grid(grid, columns=num_images).save(tmp, format="PNG")
    print(table)
    return summary
