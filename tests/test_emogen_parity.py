"""`--protocol emogen` against independent few-line references of EmoGen's preprocessing
(JingyuanYY/EmoGen: `metrics/FID.py`, `metrics/other_metrics.py`), written from its definitions
with torchvision's transforms and transformers' CLIP processor, on fixed images that are not
already at the networks' sizes, so a different resize filter, crop or scale makes them fail."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_metric_networks import _random_inception
from test_metrics import _StandIn

from coemogen.errors import CoEmoGenError
from coemogen.evaluation.evaluate import MetricNetworks, build_metric_networks, evaluate
from coemogen.evaluation.metrics import random_pairs
from coemogen.evaluation.networks import ClipFeatures, InceptionFeatures, TorchvisionClassifier
from coemogen.experiments.statistics import load_samples
from coemogen.taxonomy import Taxonomy

torchvision = pytest.importorskip("torchvision")
T = torchvision.transforms
TAX = Taxonomy.default()


def _photos(root, emotion: str, sizes: list[tuple[int, int]], seed: int) -> list:
    """Smooth random images (a coarse noise field upsampled) of the given (width, height) sizes:
    smooth enough to look like photographs to a resize filter, different enough per pixel that
    bilinear and bicubic disagree."""
    g = torch.Generator().manual_seed(seed)
    (root / emotion).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        coarse = (torch.rand(3, 9, 9, generator=g) * 255).numpy().astype(np.uint8).transpose(1, 2, 0)
        image = Image.fromarray(coarse).resize((w, h), Image.NEAREST)
        noise = (torch.rand(h, w, 3, generator=g) * 40).numpy().astype(np.int16)
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise - 20, 0, 255).astype(np.uint8)
        path = root / emotion / f"{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _stand_ins(**given) -> MetricNetworks:
    nets = {
        "fid": _StandIn("mean colour", lambda px: px.mean((2, 3)).double()),
        "lpips": _StandIn("pixels", lambda px: [px]),
        "emotion": _StandIn("first pixels", lambda px: px.flatten(1)[:, :8] * 4),
        "scene": _StandIn("scene", lambda px: px.flatten(1)[:, :5].softmax(1)),
        "object": _StandIn("object", lambda px: px.flatten(1)[:, :7].softmax(1)),
        "clip": _StandIn("flat", lambda px: px.flatten(1)),
    }
    return MetricNetworks(**{**nets, **given})


SIZES = [(512, 512), (320, 320), (640, 480), (300, 420), (256, 256), (500, 500)]


def test_fid_features_and_value_equal_emogens_bilinear_299_input(tmp_path):
    generated = _photos(tmp_path / "generated", "awe", SIZES, seed=1)
    reference = _photos(tmp_path / "reference", "awe", SIZES[::-1] + [(400, 400), (352, 352)], seed=2)
    _random_inception(tmp_path / "inception.safetensors")
    net = InceptionFeatures(tmp_path / "inception.safetensors")

    # EmoGen: Resize((299, 299)) on the PIL image, ToTensor, torchmetrics' FID(normalize=True): x * 255 as bytes
    emogen_input = T.Compose([T.Resize((299, 299)), T.ToTensor()])

    def reference_features(paths):
        x = torch.stack([emogen_input(Image.open(p).convert("RGB")) for p in paths])
        return net.model((x * 255).byte())[0].double()

    report = evaluate(generated[0].parent.parent, reference[0].parent.parent, tmp_path / "emogen", TAX,
                      networks=_stand_ins(fid=net), protocol="emogen")  # fmt: skip
    ours = evaluate(generated[0].parent.parent, reference[0].parent.parent, tmp_path / "ours", TAX,
                    networks=_stand_ins(fid=net))  # fmt: skip
    fake = reference_features(generated)
    emogen_features = torch.as_tensor(load_samples(tmp_path / "emogen" / "samples.safetensors")["fid_features"])
    ours_features = torch.as_tensor(load_samples(tmp_path / "ours" / "samples.safetensors")["fid_features"])

    def relative(a, b):  # random-init Inception features are tiny (about 1e-8): compare relative errors
        return float((a - b).norm(dim=1).max() / b.norm(dim=1).min())

    assert relative(emogen_features, fake) < 1e-5
    assert relative(ours_features, fake) > 1e-2  # bicubic and cropped: not EmoGen's input
    assert "bilinear" in report["settings"]["inputs"]["fid"] and "bicubic" in ours["settings"]["inputs"]["fid"]


def test_fid_value_under_the_protocol_equals_the_formula_on_emogens_input(tmp_path):
    """A 4-d pixel-probe network (full rank on 8 images), so the FID value itself is compared."""
    generated = _photos(tmp_path / "generated", "awe", SIZES + [(380, 380), (299, 299)], seed=3)
    reference = _photos(tmp_path / "reference", "awe", SIZES[::-1] + [(400, 400), (352, 352)], seed=4)
    rows, cols = [10, 100, 200, 290], [7, 150, 151, 298]

    def probe(px):
        return px[:, 0, rows, cols].double()

    net = _StandIn("pixel probe", probe)
    net.image_size = 299
    emogen_input = T.Compose([T.Resize((299, 299)), T.ToTensor()])

    def moments(paths):
        feats = probe(torch.stack([emogen_input(Image.open(p).convert("RGB")) for p in paths])).numpy()
        return feats.mean(0), np.cov(feats, rowvar=False)

    from scipy import linalg

    (m1, s1), (m2, s2) = moments(reference), moments(generated)
    expected = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    report = evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "emogen", TAX,
                      networks=_stand_ins(fid=net), protocol="emogen")  # fmt: skip
    ours = evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "ours", TAX,
                    networks=_stand_ins(fid=net))  # fmt: skip
    assert report["per_emotion"]["awe"]["fid"] == pytest.approx(expected, rel=1e-6)
    assert ours["per_emotion"]["awe"]["fid"] != pytest.approx(expected, rel=1e-3)


def test_sem_c_per_image_equals_emogens_resize_256_centre_crop_224(tmp_path):
    for name, n in (("scenes", 365), ("objects", 1000)):
        torch.manual_seed(len(name))
        torch.save(torchvision.models.resnet18(num_classes=n).state_dict(), tmp_path / f"{name}.pth")
    scene = TorchvisionClassifier(f"resnet18:{tmp_path / 'scenes.pth'}")
    obj = TorchvisionClassifier(f"resnet18:{tmp_path / 'objects.pth'}")
    generated = _photos(tmp_path / "generated", "awe", SIZES, seed=5)
    _photos(tmp_path / "reference", "awe", SIZES[:3], seed=6)

    # EmoGen: Resize(256), CenterCrop(224), ToTensor, Normalize(ImageNet); max of the two top probabilities
    tfm = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406],
                                                                                 [0.229, 0.224, 0.225])])  # fmt: skip
    x = torch.stack([tfm(Image.open(p).convert("RGB")) for p in generated])
    with torch.no_grad():
        top_scene = scene.model(x).softmax(1).max(1).values
        top_object = obj.model(x).softmax(1).max(1).values
    expected = torch.maximum(top_scene, top_object).double()

    nets = _stand_ins(scene=scene, object=obj)
    report = evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "emogen", TAX, networks=nets,
                      protocol="emogen")  # fmt: skip
    evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "ours", TAX, networks=nets)
    per_image = torch.as_tensor(load_samples(tmp_path / "emogen" / "samples.safetensors")["sem_c"])
    torch.testing.assert_close(per_image, expected, rtol=1e-5, atol=1e-6)
    assert report["overall"]["sem_c"] == pytest.approx(float(expected.mean()), rel=1e-5)
    ours_per_image = torch.as_tensor(load_samples(tmp_path / "ours" / "samples.safetensors")["sem_c"])
    assert (ours_per_image - expected).abs().max() > 1e-4


def test_sem_d_reproduces_emogens_double_rescale_and_reports_the_correct_value_beside_it(tmp_path, tiny_models):
    _, clip_dir = tiny_models
    clip = ClipFeatures(clip_dir)
    # at the CLIP's own size, so the processor's resize (PIL in transformers 4, torchvision in 5) is not compared
    generated = _photos(tmp_path / "generated", "awe", [(32, 32)] * 5, seed=7)
    _photos(tmp_path / "reference", "awe", [(64, 64)] * 3, seed=8)
    nets = _stand_ins(clip=clip)
    report = evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "emogen", TAX, networks=nets,
                      protocol="emogen", num_pairs=12, seed=5)  # fmt: skip
    ours = evaluate(tmp_path / "generated", tmp_path / "reference", tmp_path / "ours", TAX, networks=nets,
                    num_pairs=12, seed=5)  # fmt: skip

    # EmoGen: ToTensor() tensors (already in [0, 1]) given to CLIPProcessor, which rescales by 1/255 again;
    # the MSE of the two projected features per pair.
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    tensors = [T.ToTensor()(Image.open(p).convert("RGB")) for p in generated]
    pairs = random_pairs(len(tensors), 12, 5)

    def pair_mse(rescale: bool) -> torch.Tensor:
        out = []
        for i, j in pairs.tolist():
            inputs = processor(images=[tensors[i], tensors[j]], return_tensors="pt", do_rescale=rescale)
            with torch.no_grad():
                f = clip.model.get_image_features(**inputs)
            f = f if isinstance(f, torch.Tensor) else f.pooler_output
            out.append(F.mse_loss(f[0], f[1]))
        return torch.stack(out).double()

    quirk, correct = pair_mse(rescale=True), pair_mse(rescale=False)
    samples = load_samples(tmp_path / "emogen" / "samples.safetensors")
    # near-constant inputs give features a float32 rounding apart: the pairs agree to 0.1%, not further
    torch.testing.assert_close(torch.as_tensor(samples["sem_d_pairs"][0]), quirk, rtol=1e-3, atol=0)
    assert report["per_emotion"]["awe"]["sem_d"] == pytest.approx(float(quirk.mean()), rel=1e-3)
    assert report["overall"]["sem_d_correct"] == pytest.approx(float(correct.mean()), rel=1e-4)
    assert report["overall"]["sem_d_correct"] == pytest.approx(ours["overall"]["sem_d"], rel=1e-9)
    # the quirk really changes the number: near-constant images have near-equal features
    assert report["overall"]["sem_d"] < report["overall"]["sem_d_correct"] / 10
    assert "EmoGen's quirk" in report["settings"]["inputs"]["sem_d"] and "sem_d_correct" not in ours["overall"]


def test_a_world_reference_honours_every_flag_that_names_a_network(tmp_path, tiny_models, tiny_world):
    _, clip_dir = tiny_models
    nets = build_metric_networks(tiny_world, TAX, clip_model_name_or_path=str(clip_dir))
    assert str(clip_dir) in nets.names()["sem_d"]
    default = build_metric_networks(tiny_world, TAX)
    assert str(clip_dir) not in default.names()["sem_d"] and "world" in default.names()["emo_a"]
    _random_inception(tmp_path / "inception.safetensors")
    with_inception = build_metric_networks(tiny_world, TAX, inception_weights=str(tmp_path / "inception.safetensors"))
    assert "Inception" in with_inception.names()["fid"]
    with pytest.raises(CoEmoGenError, match="--alexnet-weights"):
        build_metric_networks(tiny_world, TAX, lpips="world", alexnet_weights=str(tmp_path / "alexnet.pth"))
    with pytest.raises(CoEmoGenError, match="--emotion-classifier"):
        build_metric_networks(tiny_world, TAX, emotion_clip=str(clip_dir))
