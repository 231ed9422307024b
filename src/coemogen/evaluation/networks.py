"""The networks behind the metrics: one small class per role and back-end.

Every network takes float images in [0, 1], shaped (N, 3, image_size, image_size), has an
`image_size` and carries a `name` that the report prints, so a synthetic-world figure is never
mistaken for an Inception or LPIPS-alex one. Weights files are read with safetensors or
`torch.load(weights_only=True)`; nothing is unpickled.

Roles: FID features (`InceptionFeatures`), LPIPS feature maps with per-channel layer weights
(`AlexNetLPIPS`), scene and object probabilities for Sem-C (`TorchvisionClassifier`), CLIP image
features for Sem-D (`ClipFeatures`), and every role from the synthetic world's judges
(`WorldNetwork`). The Emo-A network for real data is in emotion_head.py.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from ..errors import CoEmoGenError
from ..models.clip import ClipImagePreprocessor, image_embeds

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a tensors-only torch file (`state_dict` and DataParallel's
    `module.` prefix unwrapped, as in the Places365 checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise CoEmoGenError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling refusal or a corrupt file
        raise CoEmoGenError(f"{path}: not a tensors-only weights file ({err.__class__.__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CoEmoGenError(f"{path}: expected a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _require(module: str, extra: str = "metrics") -> ModuleType:
    """Import an optional back-end, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CoEmoGenError(f"this metric back-end needs {module}: pip install 'coemogen[{extra}]'") from None


class InceptionFeatures:
    """FID features: the 2048-d pool of the TF-ported Inception-v3 that torch-fidelity and
    torchmetrics use (pt_inception-2015-12-05), so figures compare with published FIDs."""

    image_size = 299

    def __init__(self, weights: str | Path | None = None) -> None:
        fidelity = _require("torch_fidelity.feature_extractor_inceptionv3")
        if weights is None:
            source = "pt_inception-2015-12-05 (downloaded by torch-fidelity)"
            try:
                self.model = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
            except Exception as err:
                raise CoEmoGenError(
                    "could not download the FID Inception weights; pass --inception-weights with a local copy of "
                    f"pt_inception-2015-12-05-6726825d.pth ({err.__class__.__name__})"
                ) from None
        else:
            source = str(weights)
            state = load_weights(weights)
            # torch-fidelity unpickles the file it is given: hand it only one we wrote from plain tensors.
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(state, Path(tmp) / "inception.pt")
                self.model = fidelity.FeatureExtractorInceptionV3(
                    "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(Path(tmp) / "inception.pt")
                )
        self.name = f"Inception-v3 pool features, 2048-d (torch-fidelity; weights: {source})"

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels * 255).round().clamp(0, 255).to(torch.uint8))[0]


class AlexNetLPIPS:
    """LPIPS (Zhang et al., 2018) on AlexNet: the five ReLU outputs, channel-normalised; the
    learned linear layers give each channel its weight (`layer_weights`)."""

    LAYER_ENDS = (2, 5, 8, 10, 12)  # torchvision alexnet.features: after relu1 ... relu5
    SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def __init__(
        self, alexnet_weights: str | Path, lin_weights: str | Path | None = None, image_size: int = 256
    ) -> None:
        torchvision = _require("torchvision")
        net = torchvision.models.alexnet()
        state = load_weights(alexnet_weights)
        features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier")}
        net.features.load_state_dict(features)
        self.features = net.features.eval()
        if lin_weights is None:  # the LPIPS v0.1 linear layers ship inside torchmetrics
            tm = _require("torchmetrics")
            lin_weights = Path(tm.__file__).parent / "functional" / "image" / "lpips_models" / "alex.pth"
        lin = load_weights(lin_weights)
        self.layer_weights = [lin[f"lin{k}.model.1.weight"].flatten() for k in range(len(self.LAYER_ENDS))]
        self.image_size = image_size
        self.name = f"LPIPS-alex v0.1 (AlexNet: {alexnet_weights}; linear layers: {lin_weights}) at {image_size}px"

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = ((pixels * 2 - 1) - self.SHIFT) / self.SCALE
        maps, start = [], 0
        for end in self.LAYER_ENDS:
            x = self.features[start:end](x)
            maps.append(x)
            start = end
        return maps


class TorchvisionClassifier:
    """Sem-C back-end: a torchvision classification architecture with a local weights file, e.g.
    `resnet50:resnet50-11ad3fa6.pth` (ImageNet objects) or `resnet18:resnet18_places365.pth.tar`
    (Places365 scenes). Returns class probabilities; the class count comes from the weights."""

    image_size = 224

    def __init__(self, spec: str) -> None:
        torchvision = _require("torchvision")
        arch, sep, path = spec.partition(":")
        if not sep:
            raise CoEmoGenError(f"classifier spec must be ARCH:WEIGHTS (e.g. resnet50:/path/weights.pth), got '{spec}'")
        state = load_weights(path)
        head = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2][-1]
        try:
            self.model = torchvision.models.get_model(arch, num_classes=head.shape[0]).eval()
        except ValueError:
            raise CoEmoGenError(f"unknown torchvision architecture '{arch}'") from None
        self.model.load_state_dict(state)
        self.name = f"{arch} ({path}, {head.shape[0]} classes)"

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.model((pixels - mean) / std).softmax(1)


class ClipFeatures:
    """Projected CLIP image features (Sem-D) from a hub id or local directory."""

    def __init__(self, clip_model_name_or_path: str | Path) -> None:
        from transformers import CLIPImageProcessor, CLIPModel

        from ..models.base import _load, load_pretrained

        self.model = load_pretrained(CLIPModel.from_pretrained, str(clip_model_name_or_path), "a CLIP model").eval()
        processor = _load(CLIPImageProcessor.from_pretrained, str(clip_model_name_or_path), "a CLIP image processor")
        self.preprocess = ClipImagePreprocessor.from_clip(self.model, processor)
        self.image_size = self.preprocess.image_size
        self.name = f"CLIP image features ({clip_model_name_or_path})"

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The features with their graph (a reward backpropagated into a generator)."""
        return image_embeds(self.model, self.preprocess(pixels))

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)


class WorldNetwork:
    """One role of the synthetic world's independent CNNs (see world/judges.py, `WorldCNN`):
    `features` (FID), `maps` (LPIPS form), `emotion` logits (Emo-A), `scene` / `object`
    probabilities (Sem-C)."""

    def __init__(self, model, role: str, name: str) -> None:
        self.model, self.role, self.name = model, role, name
        self.image_size = model.config["image_size"]

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.role == "features":
            return self.model.features(pixels)
        if self.role == "maps":
            return self.model.feature_maps(pixels)
        logits = self.model(pixels)[self.role]
        return logits if self.role == "emotion" else logits.softmax(1)  # Emo-A wants logits, Sem-C probabilities
