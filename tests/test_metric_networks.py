"""The paper's metric networks (coemogen.evaluation.networks and .emotion_head: Inception FID,
LPIPS-alex, CLIP emotion head, torchvision Sem-C classifiers) built with random weights, saved to
files and loaded through the evaluate flags."""

import json
import pickle

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from coemogen.errors import CoEmoGenError
from coemogen.evaluation.metrics import LPIPSDiversity, random_pairs
from coemogen.evaluation.networks import AlexNetLPIPS, InceptionFeatures, TorchvisionClassifier, load_weights
from coemogen.taxonomy import Taxonomy

torchvision = pytest.importorskip("torchvision")
TAX = Taxonomy.default()


def _random_inception(path):
    """torch-fidelity's FID Inception with its default random init, saved as safetensors."""
    from torch_fidelity import feature_extractor_inceptionv3 as fx

    cls = fx.FeatureExtractorInceptionV3
    original, fx.load_state_dict_from_url = fx.load_state_dict_from_url, lambda *a, **k: {}
    try:
        cls.load_state_dict, saved = (lambda self, sd: None), cls.load_state_dict
        model = cls("inception-v3-compat", ["2048"])
    finally:
        fx.load_state_dict_from_url, cls.load_state_dict = original, saved
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return model


def test_inception_features_load_a_local_file(tmp_path):
    reference = _random_inception(tmp_path / "inception.safetensors")
    net = InceptionFeatures(tmp_path / "inception.safetensors")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = net(x)
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(feats, reference((x * 255).round().to(torch.uint8))[0])
    assert "Inception-v3" in net.name and "inception.safetensors" in net.name


def test_lpips_alex_matches_torchmetrics(tmp_path):
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    ref = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()  # random AlexNet, real LPIPS linear layers
    alex = {f"features.{k.split('.', 2)[1]}.{k.split('.', 2)[2]}": v for k, v in ref.net.state_dict().items()}
    torch.save(alex, tmp_path / "alexnet.pth")
    net = AlexNetLPIPS(tmp_path / "alexnet.pth", image_size=64)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 64, 64, generator=g)
    dist = LPIPSDiversity(num_pairs=12, seed=0, layer_weights=net.layer_weights)
    dist.update(net(x))
    pairs = random_pairs(5, 12, 0)
    with torch.no_grad():
        expected = ref(x[pairs[:, 0]], x[pairs[:, 1]], normalize=True).mean()
    assert dist.compute() == pytest.approx(float(expected), rel=1e-4)
    assert dist.compute() > 0


def test_classifier_from_a_places365_style_checkpoint(tmp_path):
    model = torchvision.models.resnet18(num_classes=365)
    torch.save(
        {"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
        tmp_path / "resnet18_places365.pth.tar",
    )
    net = TorchvisionClassifier(f"resnet18:{tmp_path / 'resnet18_places365.pth.tar'}")
    probs = net(torch.rand(3, 3, 224, 224))
    assert probs.shape == (3, 365)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    with pytest.raises(CoEmoGenError, match="ARCH:WEIGHTS"):
        TorchvisionClassifier(str(tmp_path / "resnet18_places365.pth.tar"))


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_files_are_never_unpickled(tmp_path):
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(CoEmoGenError, match="tensors-only"):
        load_weights(tmp_path / "evil.pth")
    with pytest.raises(CoEmoGenError, match="not found"):
        load_weights(tmp_path / "missing.pth")


def _folder_dataset(root, size=32, per_emotion=3, emotions=TAX.emotions):
    for k, emotion in enumerate(TAX.emotions):
        if emotion not in emotions:
            continue
        (root / emotion).mkdir(parents=True)
        for i in range(per_emotion):
            Image.new("RGB", (size, size), (30 * k, 20 * i + 40, 200 - 20 * k)).save(root / emotion / f"{i}.png")
    return root


def test_evaluate_with_the_paper_networks(tiny_models, tiny_world, tmp_path, capsys):
    """Emotion head trained by the CLI on a dataset, then `coemogen evaluate` on a non-world
    reference with Inception, LPIPS-alex, the head and torchvision Sem-C classifiers."""
    from coemogen.cli import main

    _, clip_dir = tiny_models
    head = tmp_path / "head"
    assert (
        main(
            [
                "emotion-head",
                "train",
                "--dataset",
                str(tiny_world),
                "--out",
                str(head),
                "--clip_model_name_or_path",
                str(clip_dir),
                "--steps",
                "50",
            ]
        )
        == 0
    )
    config = json.loads((head / "config.json").read_text())
    assert config["emotions"] == list(TAX.emotions) and set(config["accuracy"]) == {"train", "val", "test"}
    assert config["accuracy"]["train"] > 1 / 8  # 50 full-batch steps fit the train split above chance

    _random_inception(tmp_path / "inception.safetensors")
    torch.save(
        {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()},
        tmp_path / "alexnet.pth",
    )
    for name, n in (("scenes", 365), ("objects", 1000)):
        torch.save(torchvision.models.resnet18(num_classes=n).state_dict(), tmp_path / f"{name}.pth")
    reference = _folder_dataset(tmp_path / "reference")
    generated = _folder_dataset(tmp_path / "generated", emotions=("awe", "fear"))
    args = ["evaluate", "--images", str(generated), "--reference", str(reference), "--num-pairs", "4"]
    assert (
        main(args + ["--out", str(tmp_path / "r0"), "--inception-weights", str(tmp_path / "inception.safetensors")])
        == 2
    )
    assert "--alexnet-weights" in capsys.readouterr().err
    args += [
        "--inception-weights",
        str(tmp_path / "inception.safetensors"),
        "--alexnet-weights",
        str(tmp_path / "alexnet.pth"),
        "--lpips-size",
        "64",
        "--emotion-classifier",
        str(head),
        "--scene-classifier",
        f"resnet18:{tmp_path / 'scenes.pth'}",
        "--object-classifier",
        f"resnet18:{tmp_path / 'objects.pth'}",
        "--clip_model_name_or_path",
        str(clip_dir),
    ]
    reports = []
    for run in ("r1", "r2"):
        assert main(args + ["--out", str(tmp_path / run)]) == 0
        reports.append(json.loads((tmp_path / run / "metrics.json").read_text()))
    first, second = reports
    assert first["overall"] == second["overall"] and first["per_emotion"] == second["per_emotion"]  # seeded
    names = first["settings"]["networks"]
    assert "Inception-v3" in names["fid"] and "LPIPS-alex" in names["lpips"] and "CLIP" in names["emo_a"]
    assert "resnet18" in names["sem_c"]
    for metrics in first["per_emotion"].values():
        assert abs(metrics["fid"]) < 1e-2  # generated == reference, image for image
        assert 0 < metrics["sem_c"] <= 1 and metrics["lpips"] > 0 and 0 <= metrics["emo_a"] <= 1
