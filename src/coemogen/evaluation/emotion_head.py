"""The Emo-A judges for real data: our head (a linear layer on L2-normalised CLIP image features)
and its training on an emotion dataset (`coemogen emotion-head train`), and the published heads of
EmoGen and EmoEdit, loaded as tensors (`PublishedEmotionHead`), so numbers can be compared with
their tables.

A trained head is a folder with `head.safetensors` (the linear layer, temperature folded in) and
`config.json` (CLIP model, emotions in logit order, dataset, steps, seed, accuracy per split).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy
from ..training.fit import fit
from .networks import ClipFeatures, load_weights

TEMPERATURE = 10.0  # training scales the normalised features; the saved weights include it


class ClipEmotionHead:
    """Emo-A network: emotion logits, in the order of the head's taxonomy, from a head trained by
    `train_emotion_head`."""

    def __init__(self, head_dir: str | Path, taxonomy: Taxonomy | None = None) -> None:
        from safetensors.torch import load_file

        head_dir = Path(head_dir)
        if not (head_dir / "config.json").is_file():
            raise CoEmoGenError(f"no emotion head in {head_dir} (train one with `coemogen emotion-head train`)")
        self.config = json.loads((head_dir / "config.json").read_text())
        if taxonomy is not None and list(taxonomy.emotions) != self.config["emotions"]:
            raise CoEmoGenError(f"the emotion head in {head_dir} knows other emotions: {self.config['emotions']}")
        self.clip = ClipFeatures(self.config["clip"])
        self.image_size = self.clip.image_size
        state = load_file(head_dir / "head.safetensors")
        self.linear = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        self.linear.load_state_dict(state)
        self.name = f"linear head on CLIP image features ({self.config['clip']}; {head_dir})"

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The logits with their graph (the emotion reward of `coemogen tune`)."""
        return self.linear(F.normalize(self.clip.features(pixels), dim=-1))

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.logits(pixels)


# The published heads: their parameter names and the CLIP each was trained on (both take CLIP's
# projected image features as `get_image_features` returns them, not normalised).
PUBLISHED_HEADS = {
    "emogen": ({"fc.weight", "fc.bias"}, "openai/clip-vit-large-patch14"),  # Linear(768, 8)
    "emoedit": ({"hidden.weight", "hidden.bias", "fc.weight", "fc.bias"}, "openai/clip-vit-base-patch32"),  # MLP
}


EMOGEN_ORDER = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")


def published_head_form(state: dict[str, torch.Tensor], path: str | Path) -> str:
    """'emogen' (a linear `fc`) or 'emoedit' (`hidden` -> ReLU -> `fc`), from the parameter names."""
    for form, (keys, _) in PUBLISHED_HEADS.items():
        if set(state) == keys:
            return form
    raise CoEmoGenError(
        f"{path}: not an EmoGen head (fc.weight, fc.bias) or an EmoEdit head (hidden.*, fc.*); it holds {sorted(state)}"
    )


class PublishedEmotionHead:
    """Emo-A network from a published head file (.pth/.pt read with `weights_only=True`, or
    .safetensors): EmoGen's `emo_classifier_768` (a linear layer on CLIP ViT-L/14 image features)
    or EmoEdit's `clip_classifier` (512 -> 256 -> ReLU -> 8 on CLIP ViT-B/32 features). The logits
    come from CLIP's projected image features without normalisation, as both scripts compute them;
    emotions are in the EmoGen order (amusement, awe, contentment, excitement, anger, disgust,
    fear, sadness), which must be the taxonomy's."""

    def __init__(self, path: str | Path, clip_model_name_or_path: str | None, taxonomy: Taxonomy) -> None:
        state = load_weights(path)
        self.form = published_head_form(state, path)
        clip_source = clip_model_name_or_path or PUBLISHED_HEADS[self.form][1]
        hidden = state.get("hidden.weight")
        in_dim = (hidden if hidden is not None else state["fc.weight"]).shape[1]
        classes = state["fc.weight"].shape[0]
        if list(taxonomy.emotions) != list(EMOGEN_ORDER) or classes != len(EMOGEN_ORDER):
            raise CoEmoGenError(
                f"{path}: a published head scores the 8 Mikels emotions in the order {list(EMOGEN_ORDER)}; "
                f"this head has {classes} outputs and the taxonomy is {list(taxonomy.emotions)}"
            )
        self.clip = ClipFeatures(clip_source)
        dim = self.clip.model.config.projection_dim
        if dim != in_dim:
            trained_on = PUBLISHED_HEADS[self.form][1]
            raise CoEmoGenError(
                f"{path}: the {self.form} head takes {in_dim}-d CLIP features but {clip_source} gives {dim}-d; "
                f"name its CLIP with --emotion-clip (the {self.form} head was trained on {trained_on})"
            )
        self.state = {k: v.float() for k, v in state.items()}
        self.image_size = self.clip.image_size
        self.name = f"{self.form} head ({path}) on CLIP image features ({clip_source}), not normalised"

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.clip(pixels).float()
        if self.form == "emoedit":
            x = F.relu(F.linear(x, self.state["hidden.weight"], self.state["hidden.bias"]))
        return F.linear(x, self.state["fc.weight"], self.state["fc.bias"])  # EmoEdit's softmax: in the metrics


def emotion_head(path: str | Path, clip_model_name_or_path: str | None, taxonomy: Taxonomy):
    """`--emotion-classifier`: a head folder from `coemogen emotion-head train`, or a published head file."""
    if Path(path).is_dir():
        return ClipEmotionHead(path, taxonomy)
    return PublishedEmotionHead(path, clip_model_name_or_path, taxonomy)


@torch.no_grad()
def _clip_features(clip: ClipFeatures, items: Sequence, batch_size: int, desc: str) -> torch.Tensor:
    """L2-normalised CLIP image features of dataset items (anything with a `path`)."""
    from ..data.images import load_rgb, to_tensor

    feats = []
    for i in tqdm(range(0, len(items), batch_size), desc=desc):
        pixels = torch.stack([to_tensor(load_rgb(it.path), clip.image_size) for it in items[i : i + batch_size]])
        feats.append(F.normalize(clip(pixels), dim=-1))
    return torch.cat(feats)


def train_emotion_head(
    dataset: str | Path,
    out: str | Path,
    clip_model_name_or_path: str | Path,
    taxonomy: Taxonomy,
    steps: int = 500,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Fit the Emo-A head on the dataset's train split (class-balanced logistic regression on
    frozen CLIP features, full batch, constant learning rate); report accuracy on val and test
    (or on a seeded 10% hold-out when the dataset has no splits). Writes the head into `out` and
    returns its config."""
    from safetensors.torch import save_file

    from ..data.manifest import SkipCounter
    from ..data.readers import read_dataset

    items = read_dataset(dataset, taxonomy, SkipCounter())
    splits = {s: [it for it in items if it.split == s] for s in ("train", "val", "test")}
    if not splits["train"]:  # no EmoSet splits: hold out 10% for evaluation
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(items), generator=g).tolist()
        cut = max(1, len(items) // 10)
        splits = {"train": [items[i] for i in order[cut:]], "test": [items[i] for i in order[:cut]]}
    clip = ClipFeatures(clip_model_name_or_path)
    feats = {s: _clip_features(clip, its, batch_size, f"CLIP features ({s})") for s, its in splits.items() if its}
    labels = {s: torch.tensor([taxonomy.index(it.emotion) for it in its]) for s, its in splits.items() if its}
    torch.manual_seed(seed)  # the head's initial weights
    linear = torch.nn.Linear(feats["train"].shape[1], len(taxonomy.emotions))
    # Class-balanced loss: EmoSet's emotions are far from equally frequent.
    counts = torch.bincount(labels["train"], minlength=len(taxonomy.emotions)).float()
    weight = counts.sum() / (counts.clamp(min=1) * len(counts))
    train_x, train_y = feats["train"] * TEMPERATURE, labels["train"]
    fit(
        linear.parameters(),
        lambda _generator: F.cross_entropy(linear(train_x), train_y, weight=weight),  # full batch: no draws
        steps,
        learning_rate,
        seed,
        "emotion head",
        weight_decay=weight_decay,
        warmup=None,
    )
    # The head sees normalised features; fold the temperature into the weights.
    state = {"weight": linear.weight.detach() * TEMPERATURE, "bias": linear.bias.detach()}
    with torch.no_grad():
        accuracy = {
            s: float(((feats[s] @ state["weight"].T + state["bias"]).argmax(1) == labels[s]).float().mean())
            for s in feats
        }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, out / "head.safetensors")
    config = {
        "clip": str(clip_model_name_or_path),
        "emotions": list(taxonomy.emotions),
        "dataset": str(dataset),
        "steps": steps,
        "seed": seed,
        "accuracy": accuracy,
        "num_images": {s: len(v) for s, v in labels.items()},
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return config
