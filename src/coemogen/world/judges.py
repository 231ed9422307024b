"""Independent judges for the synthetic world: an emotion classifier (Emo-A), scene and object
classifiers (Sem-C) and a feature network (FID-style and perceptual distances).

They are small CNNs trained on a separately seeded world and share no weights with the pocket
CLIP or SD, so CoEmoGen training cannot learn to fool them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.images import load_rgb, to_tensor
from ..errors import CoEmoGenError
from ..evaluation.evaluate import MetricNetworks
from ..evaluation.networks import ClipFeatures, WorldNetwork
from ..taxonomy import Taxonomy
from ..training.fit import fit
from .dataset import build_world, read_truth
from .paths import EVALUATORS, NARRATIVE_EVALUATORS, NARRATIVE_POCKET_CLIP, POCKET_CLIP, is_narrative
from .scenes import OBJECTS, SCENES


class WorldCNN(nn.Module):
    """Four conv stages with global pooling and one linear head per task."""

    def __init__(self, heads: dict[str, int], width: int = 32, image_size: int = 64) -> None:
        super().__init__()
        self.config = {"heads": heads, "width": width, "image_size": image_size}
        chans = [3, width, width * 2, width * 4, width * 4]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(a, b, 3, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.Conv2d(b, b, 3, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.heads = nn.ModuleDict({name: nn.Linear(chans[-1], n) for name, n in heads.items()})

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs for images in [0, 1] (used by the perceptual distance)."""
        x = (
            F.interpolate(images, size=self.config["image_size"], mode="bilinear", align_corners=False, antialias=True)
            if images.shape[-1] != self.config["image_size"]
            else images
        )
        x = (x - 0.5) / 0.25
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(images)[-1].mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(images)
        return {name: head(f) for name, head in self.heads.items()}

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path / "model.safetensors")

    @classmethod
    def load(cls, path: str | Path) -> WorldCNN:
        path = Path(path)
        model = cls(**json.loads((path / "config.json").read_text()))
        model.load_state_dict(load_file(path / "model.safetensors"))
        return model.eval()


def _load_split(root: Path, split: str, size: int, taxonomy: Taxonomy):
    truth = read_truth(root)
    records = json.loads((root / f"{split}.json").read_text())
    images, emotions, scenes, objects = [], [], [], []
    for emotion, image_path, _ in records:
        spec = truth[image_path]
        images.append(to_tensor(load_rgb(root / image_path), size))
        emotions.append(taxonomy.index(emotion))
        scenes.append(SCENES.index(spec.scene))
        target = torch.zeros(len(OBJECTS))
        target[[OBJECTS.index(o) for o in spec.objects]] = 1.0
        objects.append(target / target.sum())
    return torch.stack(images), torch.tensor(emotions), torch.tensor(scenes), torch.stack(objects)


def _load_narrative_split(root: Path, split: str, size: int, taxonomy: Taxonomy):
    """A narrative world's split: (images, emotions, scenes, objects, relations)."""
    from . import narrative

    truth = narrative.read_narrative_truth(root)
    vocabulary = narrative.ENTITIES + narrative.PROPS
    names = [r.name for r in narrative.RELATIONS]
    images, emotions, scenes, objects, relations = [], [], [], [], []
    for emotion, image_path, _ in json.loads((root / f"{split}.json").read_text()):
        spec = truth[image_path]
        images.append(to_tensor(load_rgb(root / image_path), size))
        emotions.append(taxonomy.index(emotion))
        scenes.append(narrative.SCENES.index(spec.scene))
        target = torch.zeros(len(vocabulary))
        target[[vocabulary.index(o) for o in spec.objects]] = 1.0
        objects.append(target / target.sum())
        relations.append(names.index(spec.relation))
    return (
        torch.stack(images),
        torch.tensor(emotions),
        torch.tensor(scenes),
        torch.stack(objects),
        torch.tensor(relations),
    )


def degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Generator-style degradations for half the batch: resolution loss, noise, a small exposure shift.

    Judges trained only on crisp renders mistake any soft image for its neighbour class; these
    perturbations keep them judging content rather than sharpness.
    """
    pick = torch.rand(len(x), generator=g) < 0.5
    size = int(torch.randint(16, 48, (1,), generator=g))
    soft = F.interpolate(
        F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False),
        size=x.shape[-1],
        mode="bilinear",
        align_corners=False,
    )
    soft = soft + 0.03 * torch.rand(len(x), 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    soft = soft * (1 + 0.1 * (torch.rand(len(x), 1, 1, 1, generator=g) - 0.5))
    return torch.where(pick[:, None, None, None], soft.clamp(0, 1), x)


def _train(model: WorldCNN, data, steps: int, seed: int, desc: str) -> None:
    images, emotions, scenes, objects = data[:4]
    relations = data[4] if len(data) > 4 else None  # narrative worlds only

    def step(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(images), (64,), generator=g)
        x = images[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = degrade(torch.where(flip[:, None, None, None], x.flip(-1), x), g)
        out = model(x)
        loss = 0.0
        if "emotion" in out:
            loss = loss + F.cross_entropy(out["emotion"], emotions[idx])
        if "scene" in out:
            loss = loss + F.cross_entropy(out["scene"], scenes[idx])
        if "object" in out:
            loss = loss + F.cross_entropy(out["object"], objects[idx])
        if "relation" in out:
            loss = loss + F.cross_entropy(out["relation"], relations[idx])
        return loss

    model.train()
    fit(model.parameters(), step, steps, lr=2e-3, seed=seed, desc=desc, weight_decay=1e-4, warmup=0.1)
    model.eval()


@torch.no_grad()
def _accuracy(model: WorldCNN, data, taxonomy: Taxonomy, suffix: str = "") -> dict[str, float]:
    images, emotions, scenes, objects = data[:4]
    outs = [model(images[i : i + 256]) for i in range(0, len(images), 256)]
    result = {}
    if "emotion" in outs[0]:
        pred = torch.cat([o["emotion"] for o in outs]).argmax(1)
        result["emotion_accuracy" + suffix] = float((pred == emotions).float().mean())
        group = torch.tensor(taxonomy.group_indices())
        result["polarity_accuracy" + suffix] = float((group[pred] == group[emotions]).float().mean())
    if "scene" in outs[0]:
        result["scene_accuracy" + suffix] = float(
            (torch.cat([o["scene"] for o in outs]).argmax(1) == scenes).float().mean()
        )
        top = torch.cat([o["object"] for o in outs]).argmax(1)
        result["object_top1_present" + suffix] = float((objects[torch.arange(len(top)), top] > 0).float().mean())
    if "relation" in outs[0]:
        pred = torch.cat([o["relation"] for o in outs]).argmax(1)
        result["relation_accuracy" + suffix] = float((pred == data[4]).float().mean())
    return result


def build_evaluators(
    out: str | Path,
    test_world: str | Path,
    images_per_emotion: int = 600,
    seed: int = 100,
    steps: int = 1000,
    size: int = 64,
    style: str = "photo",
    taxonomy: Taxonomy | None = None,
    content: str = "objects",
) -> dict:
    """Train the judges on a world rendered with `seed` (in `style`, with `taxonomy`'s emotions:
    default the 8 Mikels emotions); report accuracy on `test_world`'s test split. `content="narrative"`:
    the narrative world's judges (`build_narrative_evaluators`)."""
    if content == "narrative":
        return build_narrative_evaluators(out, test_world, images_per_emotion, seed, steps, size)
    out = Path(out)
    taxonomy = taxonomy or Taxonomy.default()
    start = time.time()
    train_root = build_world(out / "_train_world", images_per_emotion, seed, size, style=style, taxonomy=taxonomy)
    data = _load_split(train_root, "train", size, taxonomy)
    merged = tuple(torch.cat([a, b]) for a, b in zip(data, _load_split(train_root, "test", size, taxonomy)))
    test = _load_split(Path(test_world), "test", size, taxonomy)
    torch.manual_seed(seed)
    judge = WorldCNN({"emotion": taxonomy.num_emotions}, image_size=size)
    _train(judge, merged, steps, seed, "emotion judge")
    torch.manual_seed(seed + 1)
    semantics = WorldCNN({"scene": len(SCENES), "object": len(OBJECTS)}, image_size=size)
    _train(semantics, merged, steps, seed + 1, "scene/object judge")
    judge.save(out / "emotion-judge")
    semantics.save(out / "semantics")
    # The test split at a quarter of its pixels and back: how the judges fare on soft images.
    soft = F.interpolate(
        F.interpolate(test[0], size=size // 2, mode="bilinear", antialias=True, align_corners=False),
        size=size,
        mode="bilinear",
        align_corners=False,
    )
    soft_test = (soft.clamp(0, 1), *test[1:])
    report = {
        **_accuracy(judge, test, taxonomy),
        **_accuracy(semantics, test, taxonomy),
        **_accuracy(judge, soft_test, taxonomy, "_soft32"),
        **_accuracy(semantics, soft_test, taxonomy, "_soft32"),
        "train_images": len(merged[0]),
        "train_world_seed": seed,
        "style": style,
        "emotions": list(taxonomy.emotions),
        "test_images": len(test[0]),
        "seconds": round(time.time() - start),
        "scenes": SCENES,
        "objects": OBJECTS,
    }
    (out / "evaluators.json").write_text(json.dumps(report, indent=1))
    card = [
        "# World judges: independent evaluators of the synthetic world",
        "",
        "Small CNNs (`coemogen.world.judges.WorldCNN`) trained on a world rendered with its own seed;",
        "they share no weights with the pocket CLIP or pocket SD.",
        "",
        f"- command: `coemogen world judges --out DIR --test-world WORLD --seed {seed} --steps {steps} "
        f"--style {style}` ({len(taxonomy.emotions)} emotions: {', '.join(taxonomy.emotions)})",
        f"- training images: {report['train_images']} (world seed {seed}); training time: {report['seconds']} s",
        f"- test split of the evaluated world ({report['test_images']} images):",
        f"  - emotion judge {taxonomy.num_emotions}-way accuracy: {report['emotion_accuracy']:.3f}, "
        f"polarity: {report['polarity_accuracy']:.3f}",
        f"  - scene accuracy: {report['scene_accuracy']:.3f}; top object present: {report['object_top1_present']:.3f}",
        f"  - the same images downsampled to {size // 2}px and back: emotion "
        f"{report['emotion_accuracy_soft32']:.3f}, polarity {report['polarity_accuracy_soft32']:.3f}, "
        f"scene {report['scene_accuracy_soft32']:.3f}",
        "- training augmentation: half of each batch is downsampled (16-48 px) and upsampled back, with light",
        "  noise and exposure jitter, so that soft generated images are judged on content, not sharpness",
    ]
    (out / "README.md").write_text("\n".join(card) + "\n")
    import shutil

    shutil.rmtree(train_root)
    return report


def build_narrative_evaluators(
    out: str | Path,
    test_world: str | Path,
    images_per_emotion: int = 600,
    seed: int = 100,
    steps: int = 1000,
    size: int = 64,
) -> dict:
    """The narrative world's judges, trained on true labels of a narrative world rendered with
    `seed`: an emotion judge, and a semantics network with scene, object (entities and props) and
    relation heads (the relation head tells whether a generated image shows the relation a caption
    states). Each judge is saved when trained and reused by a re-run, so the command resumes."""
    from ..io import write_text
    from .narrative import ENTITIES, PROPS, RELATIONS, SCENES, build_narrative_world

    out = Path(out)
    taxonomy = Taxonomy.default()
    start = time.time()
    train_root = out / "_train_world"
    if not (train_root / "info.json").is_file():
        build_narrative_world(train_root, images_per_emotion, seed, size)
    data = _load_narrative_split(train_root, "train", size, taxonomy)
    merged = tuple(torch.cat([a, b]) for a, b in zip(data, _load_narrative_split(train_root, "test", size, taxonomy)))
    test = _load_narrative_split(Path(test_world), "test", size, taxonomy)
    heads = {
        "emotion-judge": ({"emotion": taxonomy.num_emotions}, seed, "emotion judge"),
        "semantics": (
            {"scene": len(SCENES), "object": len(ENTITIES + PROPS), "relation": len(RELATIONS)},
            seed + 1,
            "scene/object/relation judge",
        ),
    }
    models = {}
    for name, (judge_heads, judge_seed, desc) in heads.items():
        if (out / name / "model.safetensors").is_file():
            models[name] = WorldCNN.load(out / name)
            continue
        torch.manual_seed(judge_seed)
        model = WorldCNN(judge_heads, image_size=size)
        _train(model, merged, steps, judge_seed, desc)
        model.save(out / name)
        models[name] = model
    report = {
        **_accuracy(models["emotion-judge"], test, taxonomy),
        **_accuracy(models["semantics"], test, taxonomy),
        "train_images": len(merged[0]),
        "train_world_seed": seed,
        "content": "narrative",
        "steps": steps,
        "emotions": list(taxonomy.emotions),
        "test_world": str(test_world),
        "test_images": len(test[0]),
        "seconds_last_run": round(time.time() - start),
        "scenes": SCENES,
        "objects": ENTITIES + PROPS,
        "relations": [r.name for r in RELATIONS],
    }
    write_text(out / "evaluators.json", json.dumps(report, indent=1))
    card = [
        "# Narrative world judges: independent evaluators of the narrative world",
        "",
        "Small CNNs (`coemogen.world.judges.WorldCNN`) trained on true labels of a narrative world rendered",
        "with its own seed; they share no weights with the narrative pocket CLIP or SD.",
        "",
        f"- command: `coemogen world judges --content narrative --out DIR --test-world WORLD --seed {seed} "
        f"--steps {steps} --images-per-emotion {images_per_emotion}`",
        f"- training images: {report['train_images']} (world seed {seed})",
        f"- test split of the evaluated world ({report['test_images']} images, {test_world}):",
        f"  - emotion judge 8-way accuracy: {report['emotion_accuracy']:.3f}, "
        f"polarity: {report['polarity_accuracy']:.3f}",
        f"  - relation accuracy (18-way): {report['relation_accuracy']:.3f}; scene accuracy: "
        f"{report['scene_accuracy']:.3f}; top object present: {report['object_top1_present']:.3f}",
        "- training augmentation as the objects world's judges (half of each batch softened, light noise, exposure)",
    ]
    write_text(out / "README.md", "\n".join(card) + "\n")
    import shutil

    shutil.rmtree(train_root)
    return report


def world_networks_for(root: str | Path) -> MetricNetworks:
    """The judges and CLIP of the synthetic world at `root`: the narrative world's for a narrative
    world (`world build --content narrative`), else the objects world's."""
    if is_narrative(root):
        return world_networks(NARRATIVE_EVALUATORS, NARRATIVE_POCKET_CLIP)
    return world_networks()


def world_networks(
    evaluators_dir: str | Path = EVALUATORS, clip_model_name_or_path: str | Path = POCKET_CLIP
) -> MetricNetworks:
    """The synthetic world's judges (trained on world images, sharing no weights with CoEmoGen) as
    the metric networks of `coemogen evaluate`, with `clip_model_name_or_path` for Sem-D."""
    evaluators_dir = Path(evaluators_dir)
    if not (evaluators_dir / "emotion-judge").is_dir():
        raise CoEmoGenError(f"no world evaluators in {evaluators_dir} (build them with `coemogen world judges`)")
    judge = WorldCNN.load(evaluators_dir / "emotion-judge")
    semantics = WorldCNN.load(evaluators_dir / "semantics")
    relation, emotion_of_relation, world = None, None, "world"
    if "relation" in semantics.config["heads"]:  # the narrative world's judges
        from .narrative import RELATION

        info = json.loads((evaluators_dir / "evaluators.json").read_text())
        emotions, world = info["emotions"], "narrative world"
        emotion_of_relation = tuple(emotions.index(RELATION[name].emotion) for name in info["relations"])
        relation = WorldNetwork(semantics, "relation", f"{world} relation judge (semantics CNN relation head)")
    return MetricNetworks(
        fid=WorldNetwork(semantics, "features", f"{world} feature network (semantics CNN, pooled last stage)"),
        lpips=WorldNetwork(semantics, "maps", f"LPIPS form, uniform layer weights, on the {world} semantics CNN"),
        emotion=WorldNetwork(judge, "emotion", f"{world} emotion judge (independent CNN)"),
        scene=WorldNetwork(semantics, "scene", f"{world} scene judge"),
        object=WorldNetwork(semantics, "object", f"{world} object judge"),
        clip=ClipFeatures(clip_model_name_or_path),
        relation=relation,
        emotion_of_relation=emotion_of_relation,
    )
