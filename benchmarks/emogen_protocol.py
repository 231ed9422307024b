"""`coemogen evaluate` under both protocols on one fixed image set with the paper's networks in
their real shapes (random weights: Inception-v3 as torch-fidelity builds it, AlexNet-LPIPS, two
ResNet-50s with 365 and 1000 classes, CLIP ViT-L/14), so that what the protocol changes can be
seen on numbers of the real scale. Everything is seeded: the same code gives the same images,
weights and pairs. Run it on two commits to compare code versions (issue 36's before/after):

    python benchmarks/emogen_protocol.py --out /tmp/protocol-new
    git worktree add /tmp/old <commit> && (cd /tmp/old && PYTHONPATH=src python \\
        /work/main/benchmarks/emogen_protocol.py --out /tmp/protocol-old)

Writes `<out>/protocols.json` (overall FID, Sem-C, Sem-D and, where the protocol has it,
`sem_d_correct`, per protocol).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from coemogen.evaluation.evaluate import MetricNetworks, evaluate
from coemogen.evaluation.networks import AlexNetLPIPS, ClipFeatures, InceptionFeatures, TorchvisionClassifier
from coemogen.taxonomy import Taxonomy

EMOTIONS = Taxonomy.default().emotions
REFERENCE_SIZES = [(512, 512), (640, 480), (480, 640), (500, 375), (300, 300), (1024, 768), (256, 256), (800, 600)]


def photos(root: Path, emotion: str, sizes: list[tuple[int, int]], seed: int) -> None:
    """Smooth random images: a coarse colour field per image, upsampled, with fine noise."""
    g = np.random.default_rng(seed)
    (root / emotion).mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        coarse = Image.fromarray(g.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        noise = g.integers(-24, 25, (h, w, 3))
        Image.fromarray(np.clip(np.asarray(coarse, dtype=np.int64) + noise, 0, 255).astype(np.uint8)).save(
            root / emotion / f"{i:03d}.png"
        )


def networks(work: Path) -> MetricNetworks:
    from torch_fidelity import feature_extractor_inceptionv3 as fx
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    cls = fx.FeatureExtractorInceptionV3
    load_url, load_state = fx.load_state_dict_from_url, cls.load_state_dict
    fx.load_state_dict_from_url, cls.load_state_dict = (lambda *a, **k: {}), (lambda self, sd: None)
    try:
        inception = cls("inception-v3-compat", ["2048"])
    finally:
        fx.load_state_dict_from_url, cls.load_state_dict = load_url, load_state
    torch.save(inception.state_dict(), work / "inception.pth")
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()},
               work / "alexnet.pth")  # fmt: skip
    for name, n in (("scenes", 365), ("objects", 1000)):
        torch.save(torchvision.models.resnet50(num_classes=n).state_dict(), work / f"{name}.pth")
    clip_config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                       "num_hidden_layers": 24, "patch_size": 14, "image_size": 224},
        projection_dim=768,
    )  # fmt: skip
    CLIPModel(clip_config).save_pretrained(work / "clip-vit-l-14")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        work / "clip-vit-l-14"
    )
    clip = ClipFeatures(work / "clip-vit-l-14")
    head = torch.nn.Linear(clip_config.projection_dim, len(EMOTIONS))

    class EmotionHead:  # a random 8x768 head on the same CLIP, as EmoGen's is on ViT-L/14
        image_size, name = 224, "random 8x768 head on CLIP ViT-L/14"

        @torch.no_grad()
        def __call__(self, pixels):
            return head(clip(pixels))

    return MetricNetworks(
        fid=InceptionFeatures(work / "inception.pth"),
        lpips=AlexNetLPIPS(work / "alexnet.pth"),
        emotion=EmotionHead(),
        scene=TorchvisionClassifier(f"resnet50:{work / 'scenes.pth'}"),
        object=TorchvisionClassifier(f"resnet50:{work / 'objects.pth'}"),
        clip=clip,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--generated-per-emotion", type=int, default=12)
    parser.add_argument("--reference-per-emotion", type=int, default=20)
    a = parser.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for k, emotion in enumerate(EMOTIONS):
        photos(out / "generated", emotion, [(512, 512)] * a.generated_per_emotion, seed=k)
        sizes = [REFERENCE_SIZES[i % len(REFERENCE_SIZES)] for i in range(a.reference_per_emotion)]
        photos(out / "reference", emotion, sizes, seed=100 + k)
    nets = networks(out)
    results = {}
    for protocol in ("coemogen", "emogen"):
        report = evaluate(out / "generated", out / "reference", out / protocol, networks=nets, protocol=protocol)
        keep = ("fid", "fid_mean_per_emotion", "lpips", "emo_a", "sem_c", "sem_d", "sem_d_correct", "polarity_acc")
        results[protocol] = {k: report["overall"][k] for k in keep if k in report["overall"]}
        results[protocol]["inputs"] = report["settings"].get("inputs", "not recorded by this version")
    (out / "protocols.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
