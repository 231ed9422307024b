"""`coemogen evaluate`: FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall (EmoGen protocol).

Here: reading the generated images (`load_generated`), choosing the network behind each metric
(`MetricNetworks`, `build_metric_networks`) and running the metrics (`evaluate`). For a
synthetic-world reference the networks are the world's independent judges (emotion classifier,
scene and object classifiers, feature network) and the pocket CLIP for Sem-D; for real data,
Inception FID, LPIPS-alex, a CLIP emotion head, torchvision scene/object classifiers and CLIP
ViT-L/14. Every report names the networks it used. The metric objects are in metrics.py, the
networks in networks.py and emotion_head.py, the written files in report.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .. import registry
from ..data.images import ImageLoadError, load_rgb, resize_center_crop_to_tensor, stretch_to_tensor, to_tensor
from ..data.manifest import SkipCounter
from ..data.readers import read_dataset
from ..errors import CoEmoGenError
from ..io import save_safetensors
from ..taxonomy import Taxonomy
from .emotion_head import emotion_head
from .metrics import (
    CosineSemanticDiversity,
    EmotionAccuracy,
    FrechetDistance,
    LPIPSDiversity,
    PolarityAccuracy,
    RelationAgreement,
    SemanticConsistency,
    SemanticDiversity,
    TargetProbability,
    WithinPolarityConfusion,
)
from .networks import AlexNetLPIPS, ClipFeatures, InceptionFeatures, TorchvisionClassifier
from .report import write_report

logger = logging.getLogger(__name__)


def load_generated(images_dir: str | Path, taxonomy: Taxonomy, skips: SkipCounter) -> dict[str, list[Image.Image]]:
    """Generated images by emotion: from each PNG's metadata JSON, else an emotion-named sub-folder,
    else an `<emotion>_` file-name prefix."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CoEmoGenError(f"images folder not found: {images_dir}")
    out: dict[str, list[Image.Image]] = {}
    for path in sorted(images_dir.rglob("*.png")) + sorted(images_dir.rglob("*.jpg")):
        if path.stem.endswith("grid"):
            continue
        meta = path.with_suffix(".json")
        if meta.is_file():
            emotion = json.loads(meta.read_text())["emotion"]
        elif path.parent != images_dir:
            emotion = path.parent.name
        else:
            emotion = path.stem.rsplit("_", 1)[0]
        try:
            name = taxonomy.emotions[taxonomy.index(emotion)]
            out.setdefault(name, []).append(load_rgb(path))
        except (CoEmoGenError, ImageLoadError) as err:
            skips.skip(str(path), str(err).split(";")[0])
    if not out:
        raise CoEmoGenError(f"no generated images with a known emotion in {images_dir}")
    return out


@dataclass
class MetricNetworks:
    """Which network computes each metric: `fid` features, `lpips` feature maps (optional
    `layer_weights`), `emotion` logits, `scene` / `object` probabilities, `clip` features, and
    where the judges know relations (the narrative world) `relation` scores with each relation's
    emotion index in `emotion_of_relation`."""

    fid: Callable
    lpips: Callable
    emotion: Callable
    scene: Callable
    object: Callable
    clip: Callable
    relation: Callable | None = None
    emotion_of_relation: tuple[int, ...] | None = None

    def names(self) -> dict[str, str]:
        names = {
            "fid": self.fid.name,
            "lpips": self.lpips.name,
            "emo_a": self.emotion.name,
            "sem_c": f"scene: {self.scene.name}; object: {self.object.name}",
            "sem_d": self.clip.name,
        }
        if self.relation is not None:
            names["relation_acc"] = self.relation.name
        return names


def build_metric_networks(
    reference: str | Path,
    taxonomy: Taxonomy,
    fid: str = "auto",
    inception_weights: str | None = None,
    lpips: str = "auto",
    alexnet_weights: str | None = None,
    lpips_lin_weights: str | None = None,
    lpips_size: int = 256,
    emotion_classifier: str | None = None,
    emotion_clip: str | None = None,
    scene_classifier: str | None = None,
    object_classifier: str | None = None,
    clip_model_name_or_path: str | None = None,
    evaluators: str | Path | None = None,
) -> MetricNetworks:
    """Networks for `coemogen evaluate`. `auto` picks the networks a registered client has for the
    reference (the synthetic world's judges for a world), else the paper's: Inception FID,
    LPIPS-alex, a CLIP emotion head, torchvision scene/object classifiers and CLIP ViT-L/14 for
    Sem-D. Every option that names a network is honoured whatever the reference: a weights file
    implies its back-end (`inception_weights`: FID on Inception; `alexnet_weights` or
    `lpips_lin_weights`: LPIPS-alex) and `clip_model_name_or_path` replaces the world's CLIP for
    Sem-D."""
    if emotion_clip and not emotion_classifier:
        raise CoEmoGenError("--emotion-clip names the CLIP of a published head: it needs --emotion-classifier")
    # the networks a registered client (the synthetic world) has for this reference, if any
    world = registry.reference_networks(reference, clip_model_name_or_path, evaluators)
    in_world = world is not None
    if fid == "auto":
        fid = "world" if in_world and not inception_weights else "inception"
    if lpips == "auto":
        lpips = "world" if in_world and not (alexnet_weights or lpips_lin_weights) else "alex"
    for flag, value, chosen in (
        ("--inception-weights", inception_weights, fid),
        ("--alexnet-weights", alexnet_weights, lpips),
        ("--lpips-lin-weights", lpips_lin_weights, lpips),
    ):
        if value and chosen == "world":
            raise CoEmoGenError(f"{flag} names a network the 'world' choice replaces: drop one of the two")

    def pick(role: str, chosen: bool, build: Callable, flag: str):
        """The network the options chose, else the world's, else an error naming the flag."""
        if chosen:
            return build()
        if world is None:
            raise CoEmoGenError(
                f"{role} for a non-world reference needs {flag} (the world's judges only know world images)"
            )
        return getattr(world, role)

    def alexnet() -> AlexNetLPIPS:
        if alexnet_weights is None:
            raise CoEmoGenError("LPIPS-alex needs --alexnet-weights (a torchvision AlexNet weights file)")
        return AlexNetLPIPS(alexnet_weights, lpips_lin_weights, lpips_size)

    return MetricNetworks(
        fid=pick("fid", fid == "inception", lambda: InceptionFeatures(inception_weights), "--fid-features inception"),
        lpips=pick("lpips", lpips == "alex", alexnet, "--lpips-net alex"),
        emotion=pick(
            "emotion",
            bool(emotion_classifier),
            lambda: emotion_head(emotion_classifier, emotion_clip, taxonomy),
            "--emotion-classifier (a head from `coemogen emotion-head train`, or EmoGen's or EmoEdit's head file)",
        ),
        scene=pick(
            "scene", bool(scene_classifier), lambda: TorchvisionClassifier(scene_classifier), "--scene-classifier"
        ),
        object=pick(
            "object", bool(object_classifier), lambda: TorchvisionClassifier(object_classifier), "--object-classifier"
        ),
        clip=world.clip if world else ClipFeatures(clip_model_name_or_path or "openai/clip-vit-large-patch14"),
        relation=world.relation if world else None,
        emotion_of_relation=world.emotion_of_relation if world else None,
    )


@dataclass(frozen=True)
class ImageInput:
    """How an image becomes one network's input: float (3, size, size) in [0, 1].

    `form`: "crop" (ours: shorter side to `size`, bicubic, then the centre square); "stretch"
    (both sides to `size`, bilinear: EmoGen's FID input); "resize-crop" (shorter side to
    size * 256 / 224, bilinear, then the central `size` square: EmoGen's Sem-C input, Resize(256) +
    CenterCrop(224) at 224 px). `scale` multiplies the result (1/255: EmoGen's double rescale).
    """

    size: int
    form: str = "crop"
    scale: float = 1.0

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.form == "crop":
            x = to_tensor(image, self.size)
        elif self.form == "stretch":
            x = stretch_to_tensor(image, self.size)
        elif self.form == "resize-crop":
            x = resize_center_crop_to_tensor(image, round(self.size * 256 / 224), self.size)
        else:
            raise ValueError(f"unknown image input form '{self.form}'")
        return x if self.scale == 1.0 else x * self.scale

    def describe(self) -> str:
        how = {
            "crop": f"shorter side to {self.size} (bicubic) + centre crop",
            "stretch": f"resized to {self.size}x{self.size} (bilinear, aspect not kept)",
            "resize-crop": f"shorter side to {round(self.size * 256 / 224)} (bilinear) + centre crop {self.size}",
        }[self.form]
        return how if self.scale == 1.0 else f"{how}, then scaled by {self.scale:.6g}"


def _batches(images: list[Image.Image], inputs: set[ImageInput], batch: int = 64) -> Iterator[dict]:
    """Batches of the same images in every input form the networks ask for."""
    for i in range(0, len(images), batch):
        yield {form: torch.stack([form(im) for im in images[i : i + batch]]) for form in inputs}


def _groups(taxonomy: Taxonomy) -> list[int]:
    return [taxonomy.group_index_of(e) for e in taxonomy.emotions]


PAIRWISE = ("lpips", "sem_d", "sem_d_cosine", "sem_d_correct")  # diversity within the generated set: need 2 images


@dataclass(frozen=True)
class EvaluationProtocol:
    """Every way EmoGen's evaluation script differs from ours, in one place (docs/evaluation.md
    says why ours differs). `num_pairs`: default pairs per emotion for LPIPS and Sem-D;
    `all_reference_images`: FID against every reference image of every split (ours: the test split,
    at most `max_reference` per emotion); `cumulative_pairs`: pairs drawn from the images of the
    emotion and every emotion before it in taxonomy order (their image list is never reset);
    `lpips_unit_range`: LPIPS fed [0, 1] images where it expects [-1, 1]; `summed_polarity`:
    polarity as the group of highest summed probability (ours: the argmax emotion's group);
    `fid_form` / `classifier_form`: the `ImageInput` form of FID's and Sem-C's classifiers' inputs;
    `clip_double_rescale`: Sem-D's CLIP sees images scaled by 1/255 twice, as EmoGen's script hands
    [0, 1] tensors to a CLIP processor that rescales them again (the correctly scaled value is then
    reported beside it as `sem_d_correct`)."""

    num_pairs: int
    all_reference_images: bool = False
    cumulative_pairs: bool = False
    lpips_unit_range: bool = False
    summed_polarity: bool = False
    fid_form: str = "crop"
    classifier_form: str = "crop"
    clip_double_rescale: bool = False

    def inputs(self, nets: MetricNetworks) -> dict[str, ImageInput]:
        """The input of each network role under this protocol."""
        inputs = {
            "fid": ImageInput(nets.fid.image_size, self.fid_form),
            "lpips": ImageInput(nets.lpips.image_size),
            "emotion": ImageInput(nets.emotion.image_size),
            "scene": ImageInput(nets.scene.image_size, self.classifier_form),
            "object": ImageInput(nets.object.image_size, self.classifier_form),
            "clip": ImageInput(nets.clip.image_size, scale=1 / 255 if self.clip_double_rescale else 1.0),
        }
        if self.clip_double_rescale:
            inputs["clip_correct"] = ImageInput(nets.clip.image_size)
        if nets.relation is not None:
            inputs["relation"] = ImageInput(nets.relation.image_size)
        return inputs

    def describe(self, nets: MetricNetworks) -> dict[str, str]:
        """What each metric's network is fed, for the report (metrics.json's settings)."""
        inputs = self.inputs(nets)
        described = {
            "fid": inputs["fid"].describe(),
            "lpips": inputs["lpips"].describe() + (", [0, 1] images given as [-1, 1]" if self.lpips_unit_range else ""),
            "emo_a": inputs["emotion"].describe(),
            "sem_c": inputs["scene"].describe(),
            "sem_d": inputs["clip"].describe(),
        }
        if self.clip_double_rescale:
            described["sem_d"] += (
                " (EmoGen's quirk: its script hands [0, 1] tensors to a CLIP processor that rescales by 1/255 "
                "again, so CLIP sees near-constant images; the correctly scaled value is `sem_d_correct`)"
            )
            described["sem_d_correct"] = inputs["clip_correct"].describe()
        return described


PROTOCOLS = {
    "coemogen": EvaluationProtocol(num_pairs=1000),
    "emogen": EvaluationProtocol(
        num_pairs=10,
        all_reference_images=True,
        cumulative_pairs=True,
        lpips_unit_range=True,
        summed_polarity=True,
        fid_form="stretch",
        classifier_form="resize-crop",
        clip_double_rescale=True,
    ),
}


class _Evaluation:
    """The running state of one `evaluate` call: the metric objects pooled over every emotion, the
    per-pair metrics (one emotion's, or EmoGen's cumulative pool), the per-image samples, warnings."""

    def __init__(
        self, nets: MetricNetworks, taxonomy: Taxonomy, protocol: EvaluationProtocol, num_pairs: int, seed: int
    ) -> None:
        self.nets, self.taxonomy, self.protocol, self.num_pairs, self.seed = nets, taxonomy, protocol, num_pairs, seed
        self.inputs = protocol.inputs(nets)
        self.groups = _groups(taxonomy)
        self.pooled = self._image_metrics()
        self.cumulative = self._pair_metrics()
        self.samples: dict[str, list[torch.Tensor]] = {
            "emotion": [], "fid_features": [], "lpips_pairs": [], "sem_d_pairs": []
        }  # fmt: skip
        self.warnings: list[str] = []

    def _image_metrics(self) -> dict:
        metrics = {
            "fid": FrechetDistance(),
            "emo_a": EmotionAccuracy(),
            "sem_c": SemanticConsistency(),
            "polarity_acc": PolarityAccuracy(self.groups, summed=self.protocol.summed_polarity),
            "within_polarity": WithinPolarityConfusion(self.groups, summed=self.protocol.summed_polarity),
            "target_prob": TargetProbability(),
        }
        if self.nets.relation is not None:
            metrics["relation_acc"] = RelationAgreement(self.nets.emotion_of_relation)
        return metrics

    def _pair_metrics(self) -> dict:
        lpips_weights = getattr(self.nets.lpips, "layer_weights", None)
        metrics = {
            "lpips": LPIPSDiversity(self.num_pairs, self.seed, lpips_weights),
            "sem_d": SemanticDiversity(self.num_pairs, self.seed),
            "sem_d_cosine": CosineSemanticDiversity(self.num_pairs, self.seed),
        }
        if self.protocol.clip_double_rescale:
            metrics["sem_d_correct"] = SemanticDiversity(self.num_pairs, self.seed)
        return metrics

    def warn(self, message: str) -> None:
        logger.warning(message)
        self.warnings.append(message)

    def emotion(self, emotion: str, images: list[Image.Image], ref_images: list[Image.Image]) -> dict:
        """Feed one emotion's generated and reference images to its own and the pooled metrics;
        returns its row of the report (NaN, with a warning, where it has too few images)."""
        nets, target, inputs = self.nets, self.taxonomy.index(emotion), self.inputs
        own = {**self._image_metrics(), **(self.cumulative if self.protocol.cumulative_pairs else self._pair_metrics())}
        both = (own, self.pooled)
        for px in _batches(images, set(inputs.values())):
            feats, logits = nets.fid(px[inputs["fid"]]), nets.emotion(px[inputs["emotion"]])
            targets = torch.full((len(logits),), target)
            self.samples["emotion"].append(targets)
            self.samples["fid_features"].append(feats.detach().double().cpu())
            scene, obj = nets.scene(px[inputs["scene"]]), nets.object(px[inputs["object"]])
            relation = None if nets.relation is None else nets.relation(px[inputs["relation"]])
            for group in both:
                group["fid"].update(feats, real=False)
                for key in ("emo_a", "polarity_acc", "within_polarity", "target_prob"):
                    group[key].update(logits, targets)
                group["sem_c"].update(scene, obj)
                if relation is not None:
                    group["relation_acc"].update(relation, targets)
            lpips_in = px[inputs["lpips"]]
            own["lpips"].update(nets.lpips((lpips_in + 1) / 2 if self.protocol.lpips_unit_range else lpips_in))
            clip = nets.clip(px[inputs["clip"]])
            own["sem_d"].update(clip)
            own["sem_d_cosine"].update(clip)
            if "sem_d_correct" in own:
                own["sem_d_correct"].update(nets.clip(px[inputs["clip_correct"]]))
        for px in _batches(ref_images, {inputs["fid"]}):
            feats = nets.fid(px[inputs["fid"]])
            for group in both:
                group["fid"].update(feats, real=True)
        missing = set()
        if len(images) < 2 or len(ref_images) < 2:
            missing.add("fid")
            self.warn(
                f"{emotion}: FID needs at least 2 generated and 2 reference images, got {len(images)} generated "
                f"and {len(ref_images)} reference; recorded as NaN"
            )
        if own["lpips"].num_samples < 2:
            missing.update(PAIRWISE)
            self.warn(
                f"{emotion}: LPIPS and Sem-D need at least 2 generated images, got {len(images)}; recorded as NaN"
            )
        else:
            self.samples["lpips_pairs"].append(own["lpips"].pair_distances().double())
            self.samples["sem_d_pairs"].append(own["sem_d"].pair_distances().double())
        return {
            **{key: float("nan") if key in missing else m.compute() for key, m in own.items()},
            "num_images": len(images),
            "num_reference": len(ref_images),
        }

    def overall(self, per_emotion: dict[str, dict], num_images: int) -> dict:
        """Pooled metrics over every image; the diversity metrics (and FID per emotion) averaged
        over the emotions."""

        def mean(key: str) -> float:
            return sum(m[key] for m in per_emotion.values()) / len(per_emotion)

        fid = self.pooled["fid"]
        if fid.num_fake < 2 or fid.num_real < 2:
            self.warn(
                f"overall: FID needs at least 2 generated and 2 reference images, got {fid.num_fake} generated "
                f"and {fid.num_real} reference; recorded as NaN"
            )
        return {
            "fid": fid.compute() if fid.num_fake >= 2 and fid.num_real >= 2 else float("nan"),
            "fid_mean_per_emotion": mean("fid"),
            "lpips": mean("lpips"),
            "emo_a": self.pooled["emo_a"].compute(),
            "sem_c": self.pooled["sem_c"].compute(),
            "sem_d": mean("sem_d"),
            "sem_d_cosine": mean("sem_d_cosine"),
            **({"sem_d_correct": mean("sem_d_correct")} if self.protocol.clip_double_rescale else {}),
            "polarity_acc": self.pooled["polarity_acc"].compute(),
            "within_polarity": self.pooled["within_polarity"].compute(),
            "target_prob": self.pooled["target_prob"].compute(),
            **({"relation_acc": self.pooled["relation_acc"].compute()} if "relation_acc" in self.pooled else {}),
            "num_images": num_images,
        }


def evaluate(
    images_dir: str | Path,
    reference: str | Path,
    out: str | Path,
    taxonomy: Taxonomy | None = None,
    num_pairs: int | None = None,
    seed: int = 0,
    max_reference: int = 500,
    networks: MetricNetworks | None = None,
    protocol: str = "coemogen",
) -> dict:
    """Compute the metrics per emotion and overall, write metrics.json, metrics.md and report.html
    into `out` (report.py) and return the report: {"overall", "per_emotion", "settings"}.

    `protocol`: "coemogen" (ours, the default) or "emogen" (EmoGen's evaluation script where it
    differs, so numbers compare with published tables): `EvaluationProtocol` lists the differences.

    A metric that an emotion has too few images for (FID: 2 generated and 2 reference; LPIPS and
    Sem-D: 2 generated) is recorded as NaN, with a warning logged and kept in settings["warnings"].

    Example: a synthetic world's own images judged against it (its judges, registered by the world):

    Examples:
        >>> import tempfile
        >>> from coemogen.world.dataset import build_world
        >>> world = build_world(tempfile.mkdtemp(), images_per_emotion=3, seed=0, size=64)
        >>> report = evaluate(world / "image", world, tempfile.mkdtemp(), num_pairs=10)
        >>> report["overall"]["num_images"], report["settings"]["networks"]["emo_a"]
        (24, 'world emotion judge (independent CNN)')
        >>> 0 <= report["overall"]["emo_a"] <= 1 and report["overall"]["fid"] >= 0
        True
    """
    # 1. The protocol, the generated images, the reference images and the networks.
    if protocol not in PROTOCOLS:
        raise CoEmoGenError(f"unknown evaluation protocol '{protocol}'; choose one of {list(PROTOCOLS)}")
    rules = PROTOCOLS[protocol]
    num_pairs = num_pairs or rules.num_pairs
    taxonomy = taxonomy or Taxonomy.default()
    skips = SkipCounter()
    generated = load_generated(images_dir, taxonomy, skips)
    ref_items = read_dataset(reference, taxonomy, SkipCounter())
    test_items = [it for it in ref_items if it.split in (None, "test")] or ref_items
    if rules.all_reference_images:
        test_items = ref_items
    nets = networks or build_metric_networks(reference, taxonomy)
    run = _Evaluation(nets, taxonomy, rules, num_pairs, seed)

    # 2. Each emotion (a cumulative pair pool grows in taxonomy order), then 3. the overall values.
    order = [e for e in taxonomy.emotions if e in generated] if rules.cumulative_pairs else sorted(generated)
    per_emotion: dict[str, dict] = {}
    for emotion in tqdm(order, desc="evaluate"):
        refs = [it for it in test_items if it.emotion == emotion]
        if len(refs) < 2:  # a tiny reference set: fall back to every split of this emotion
            refs = [it for it in ref_items if it.emotion == emotion]
        refs = refs if rules.all_reference_images else refs[:max_reference]
        per_emotion[emotion] = run.emotion(emotion, generated[emotion], [load_rgb(it.path) for it in refs])
    overall = run.overall(per_emotion, sum(len(v) for v in generated.values()))

    # 4. The report and the per-image samples the confidence intervals are computed from.
    report = {
        "overall": overall,
        "per_emotion": per_emotion,
        "settings": {
            "images": str(images_dir),
            "reference": str(reference),
            "num_pairs": num_pairs,
            "protocol": protocol,
            "inputs": rules.describe(nets),
            "seed": seed,
            "max_reference": max_reference,
            "networks": nets.names(),
            "skipped": skips.total,
            "skip_reasons": dict(skips.reasons),
            "warnings": run.warnings,
        },
    }
    write_report(report, generated, out)
    write_samples(run.samples, run.pooled, out)
    return report


def write_samples(samples: dict[str, list[torch.Tensor]], pooled: dict, out: str | Path) -> Path:
    """`samples.safetensors`: what the overall metrics are computed from, per image (emotion index,
    Emo-A and polarity hits, Sem-C value, FID features), per pair (LPIPS and Sem-D distances, one
    row per emotion) and the reference's FID moments, so `experiments/statistics.py` can bootstrap
    confidence intervals over images without re-running any network."""
    real_mean, real_cov = pooled["fid"].real.mean_and_cov() if pooled["fid"].num_real >= 2 else (None, None)
    tensors = {
        "emotion": torch.cat(samples["emotion"]).double(),  # checked readers take float tensors only
        "emo_a": pooled["emo_a"].per_sample(),
        "polarity_acc": pooled["polarity_acc"].per_sample(),
        "sem_c": pooled["sem_c"].per_sample(),
        "fid_features": torch.cat(samples["fid_features"]),
    }
    if "relation_acc" in pooled:
        tensors["relation_acc"] = pooled["relation_acc"].per_sample()
    if samples["lpips_pairs"]:
        tensors["lpips_pairs"] = torch.stack(samples["lpips_pairs"])
        tensors["sem_d_pairs"] = torch.stack(samples["sem_d_pairs"])
    if real_mean is not None:
        tensors["reference_mean"], tensors["reference_cov"] = torch.from_numpy(real_mean), torch.from_numpy(real_cov)
    return save_safetensors({k: v.contiguous() for k, v in tensors.items()}, Path(out) / "samples.safetensors")
