"""EmoGen-comparable evaluation: published Emo-A heads read as tensors only, `--protocol emogen`
against a hand computation, and the per-image samples the confidence intervals resample."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_metrics import _StandIn  # the metric tests' stand-in network: a fixed function of the pixels

from coemogen.data.images import load_rgb, to_tensor
from coemogen.errors import CoEmoGenError
from coemogen.evaluation.emotion_head import PublishedEmotionHead
from coemogen.evaluation.evaluate import MetricNetworks, build_metric_networks, evaluate
from coemogen.evaluation.metrics import REPORTED_KEYS, PolarityAccuracy, WithinPolarityConfusion, random_pairs
from coemogen.experiments.statistics import bootstrap, bootstrap_difference, load_samples, measured, seed_metrics
from coemogen.models.clip import ClipImagePreprocessor, image_embeds
from coemogen.taxonomy import Taxonomy

TAX = Taxonomy.default()


def _networks() -> MetricNetworks:
    return MetricNetworks(
        fid=_StandIn("mean colour", lambda px: px.mean((2, 3)).double()),
        lpips=_StandIn("pixels", lambda px: [px]),
        emotion=_StandIn("first pixels", lambda px: px.flatten(1)[:, :8] * 4),
        scene=_StandIn("scene", lambda px: px.flatten(1)[:, :5].softmax(1)),
        object=_StandIn("object", lambda px: px.flatten(1)[:, :7].softmax(1)),
        clip=_StandIn("flat", lambda px: px.flatten(1)),
    )


def _images(root, counts: dict[str, int], seed: int):
    g = torch.Generator().manual_seed(seed)
    for emotion, n in counts.items():
        (root / emotion).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()).save(
                root / emotion / f"{i}.png"
            )
    return root


def _pixels(root, emotion):
    return torch.stack([to_tensor(load_rgb(p), 8) for p in sorted((root / emotion).glob("*.png"))])


def _lpips_by_hand(px: torch.Tensor, pairs: torch.Tensor) -> float:
    unit = px / torch.sqrt((px**2).sum(1, keepdim=True) + 1e-8)
    return float(((unit[pairs[:, 0]] - unit[pairs[:, 1]]) ** 2).sum(1).mean((1, 2)).mean())


def test_emogen_protocol_equals_a_hand_computation_and_differs_from_ours(tmp_path):
    reference = _images(tmp_path / "reference", {"awe": 3, "fear": 3}, seed=1)
    generated = _images(tmp_path / "generated", {"awe": 3, "fear": 4}, seed=2)
    nets = _networks()
    ours = evaluate(generated, reference, tmp_path / "ours", TAX, num_pairs=6, seed=3, networks=nets)
    emogen = evaluate(generated, reference, tmp_path / "emogen", TAX, seed=3, networks=nets, protocol="emogen")
    awe, fear = _pixels(generated, "awe"), _pixels(generated, "fear")
    # EmoGen: 10 pairs per emotion by default; fear's pairs come from awe's and fear's images (awe
    # comes first in EmoGen's order), and LPIPS sees [0, 1] images as if they were [-1, 1].
    assert emogen["settings"]["num_pairs"] == 10 and emogen["settings"]["protocol"] == "emogen"
    pool = torch.cat([awe, fear])
    assert emogen["per_emotion"]["fear"]["lpips"] == pytest.approx(
        _lpips_by_hand((pool + 1) / 2, random_pairs(7, 10, 3))
    )
    assert emogen["per_emotion"]["awe"]["lpips"] == pytest.approx(_lpips_by_hand((awe + 1) / 2, random_pairs(3, 10, 3)))
    flat = pool.flatten(1)
    pairs = random_pairs(7, 10, 3)
    sem_d = float(((flat[pairs[:, 0]] - flat[pairs[:, 1]]) ** 2).mean(1).mean())
    # Sem-D's CLIP sees the images scaled by 1/255 once more (EmoGen's double rescale), the correct value beside it
    assert emogen["per_emotion"]["fear"]["sem_d"] == pytest.approx(sem_d / 255**2)
    assert emogen["per_emotion"]["fear"]["sem_d_correct"] == pytest.approx(sem_d)
    # ours: one emotion's images, the pixels as they are
    assert ours["per_emotion"]["fear"]["lpips"] == pytest.approx(_lpips_by_hand(fear, random_pairs(4, 6, 3)))
    assert ours["per_emotion"]["fear"]["lpips"] != pytest.approx(emogen["per_emotion"]["fear"]["lpips"])
    # polarity: EmoGen's group of the highest summed probability vs the argmax emotion's group
    logits = {e: px.flatten(1)[:, :8] * 4 for e, px in (("awe", awe), ("fear", fear))}
    groups = torch.tensor([TAX.group_index_of(e) for e in TAX.emotions])
    summed, argmax = [], []
    for emotion, z in logits.items():
        target = groups[TAX.index(emotion)]
        per_group = torch.stack([z.softmax(1)[:, groups == k].sum(1) for k in range(2)], 1)
        summed += (per_group.argmax(1) == target).tolist()
        argmax += (groups[z.argmax(1)] == target).tolist()
    assert emogen["overall"]["polarity_acc"] == pytest.approx(np.mean(summed))
    assert ours["overall"]["polarity_acc"] == pytest.approx(np.mean(argmax))
    # the same Emo-A under both protocols (EmoGen pools it over images as we do; its input is ours)
    assert emogen["overall"]["emo_a"] == ours["overall"]["emo_a"]


def test_within_polarity_confusion_counts_the_right_polarity_with_the_wrong_emotion():
    groups = [TAX.group_index_of(e) for e in TAX.emotions]
    target = TAX.index("fear")
    same_polarity = next(i for i, g in enumerate(groups) if g == groups[target] and i != target)
    other_polarity = next(i for i, g in enumerate(groups) if g != groups[target])
    predicted = torch.tensor([target, same_polarity, other_polarity, same_polarity])
    logits = torch.nn.functional.one_hot(predicted, len(groups)).float()
    targets = torch.full((4,), target)
    confusion, polarity = WithinPolarityConfusion(groups), PolarityAccuracy(groups)
    confusion.update(logits, targets)
    polarity.update(logits, targets)
    assert confusion.per_sample().tolist() == [0.0, 1.0, 0.0, 1.0] and confusion.compute() == 0.5
    assert not confusion.higher_is_better
    # rebuilt from an evaluation's samples: the polarity hit without the Emo-A hit
    samples = {"polarity_acc": polarity.per_sample().numpy(), "emo_a": np.array([1.0, 0.0, 0.0, 0.0])}
    rebuilt = WithinPolarityConfusion.from_samples(samples, "within_polarity", np.arange(4))
    assert rebuilt.compute() == confusion.compute()


def test_summed_polarity_differs_from_the_argmax_emotions_group():
    # emotion 0 (positive) is the argmax, but the four negative emotions hold more probability
    logits = torch.tensor([[2.0, 0, 0, 0, 1.5, 1.5, 1.5, 1.5]])
    groups = [TAX.group_index_of(e) for e in TAX.emotions]
    argmax, summed = PolarityAccuracy(groups), PolarityAccuracy(groups, summed=True)
    argmax.update(logits, torch.tensor([0]))
    summed.update(logits, torch.tensor([0]))
    assert (argmax.compute(), summed.compute()) == (1.0, 0.0)


def test_evaluate_writes_samples_that_reproduce_its_numbers_and_bootstrap(tmp_path):
    reference = _images(tmp_path / "reference", {"awe": 4, "fear": 4, "anger": 4}, seed=1)
    runs = []
    for seed in range(2):
        generated = _images(tmp_path / f"generated-{seed}", {"awe": 5, "fear": 5, "anger": 5}, seed=10 + seed)
        report = evaluate(
            generated, reference, tmp_path / f"out-{seed}", TAX, num_pairs=30, seed=seed, networks=_networks()
        )
        samples = load_samples(tmp_path / f"out-{seed}" / "samples.safetensors")
        full = seed_metrics(samples)
        # objects-world images carry no relation labels, so relation_acc is not measured
        assert measured([samples]) == tuple(k for k in REPORTED_KEYS if k != "relation_acc")
        for key in measured([samples]):
            assert full[key] == pytest.approx(report["overall"][key], rel=1e-9), key
        assert samples["fid_features"].shape == (15, 3) and samples["lpips_pairs"].shape == (3, 30)
        runs.append(samples)
    est = bootstrap(runs, num_resamples=200)
    for key, e in est.items():
        assert e.low <= e.high and e.seeds == 2
        assert e.mean == pytest.approx(np.mean([seed_metrics(r)[key] for r in runs]))
    assert est["emo_a"].low < est["emo_a"].high  # images and seeds really resampled
    same = bootstrap_difference(runs, runs, "emo_a", num_resamples=200)
    assert same.mean == 0 and same.low <= 0 <= same.high


@pytest.mark.parametrize("protocol", ["coemogen", "emogen"])
def test_every_metrics_bootstrap_point_estimate_is_evaluates_value(tmp_path, protocol):
    reference = _images(tmp_path / "reference", {"awe": 4, "fear": 5}, seed=2)
    generated = _images(tmp_path / "generated", {"awe": 6, "fear": 4}, seed=3)
    nets = _networks()
    report = evaluate(generated, reference, tmp_path / "out", TAX, num_pairs=25, networks=nets, protocol=protocol)
    samples = load_samples(tmp_path / "out" / "samples.safetensors")
    estimates = bootstrap([samples], num_resamples=20)
    assert set(estimates) == set(measured([samples])) and "relation_acc" not in estimates
    for key in estimates:
        assert estimates[key].mean == pytest.approx(report["overall"][key], rel=1e-9), key


# --- published heads -------------------------------------------------------------------------


def _head_file(path, tensors: dict, as_safetensors: bool = False):
    if as_safetensors:
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path


def _expected_logits(clip_dir, pixels, head):
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        x = image_embeds(clip, ClipImagePreprocessor.from_clip(clip)(pixels))
        if "hidden.weight" in head:
            x = F.relu(F.linear(x, head["hidden.weight"], head["hidden.bias"]))
        return F.linear(x, head["fc.weight"], head["fc.bias"])


@pytest.mark.parametrize("form", ["emogen", "emoedit"])
def test_published_heads_load_as_tensors_and_score(tmp_path, tiny_models, tiny_world, form):
    _, clip_dir = tiny_models
    from transformers import CLIPConfig

    dim = CLIPConfig.from_pretrained(clip_dir).projection_dim
    g = torch.Generator().manual_seed(0)
    if form == "emogen":
        head = {"fc.weight": torch.randn(8, dim, generator=g), "fc.bias": torch.randn(8, generator=g)}
    else:
        head = {
            "hidden.weight": torch.randn(16, dim, generator=g),
            "hidden.bias": torch.randn(16, generator=g),
            "fc.weight": torch.randn(8, 16, generator=g),
            "fc.bias": torch.randn(8, generator=g),
        }
    path = _head_file(tmp_path / "head.pth", head)
    net = PublishedEmotionHead(path, str(clip_dir), TAX)
    assert net.form == form
    pixels = torch.rand(3, 3, 32, 32, generator=g)
    torch.testing.assert_close(net(pixels), _expected_logits(clip_dir, pixels, head))
    # through evaluate's networks, as `--emotion-classifier HEAD --emotion-clip CLIP` builds them
    nets = build_metric_networks(tiny_world, TAX, emotion_classifier=str(path), emotion_clip=str(clip_dir))
    assert isinstance(nets.emotion, PublishedEmotionHead) and form in nets.names()["emo_a"]
    safetensors_net = PublishedEmotionHead(_head_file(tmp_path / "head.safetensors", head, True), str(clip_dir), TAX)
    torch.testing.assert_close(safetensors_net(pixels), net(pixels))


def test_a_head_that_does_not_fit_the_clip_is_refused_naming_the_flag(tmp_path, tiny_models):
    _, clip_dir = tiny_models
    path = _head_file(tmp_path / "head.pth", {"fc.weight": torch.zeros(8, 768), "fc.bias": torch.zeros(8)})
    with pytest.raises(CoEmoGenError, match=r"768-d CLIP features .* --emotion-clip"):
        PublishedEmotionHead(path, str(clip_dir), TAX)
    odd = _head_file(tmp_path / "odd.pth", {"fc.weight": torch.zeros(8, 4), "proj": torch.zeros(2)})
    with pytest.raises(CoEmoGenError, match="not an EmoGen head"):
        PublishedEmotionHead(odd, str(clip_dir), TAX)
    with pytest.raises(CoEmoGenError, match="8 Mikels emotions"):
        PublishedEmotionHead(path, str(clip_dir), Taxonomy.load("emoart"))


class _Payload:
    """What a hostile head file carries: unpickling it would run code (here: create a file)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, tiny_models):
    _, clip_dir = tiny_models
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": _Payload(marker), "fc.bias": torch.zeros(8)}, f)
    torch.save({"fc.weight": _Payload(marker), "fc.bias": torch.zeros(8)}, tmp_path / "evil-torch.pth")
    marker.unlink(missing_ok=True)  # torch.save itself never calls __reduce__'s callable, but be sure
    for bad in (path, tmp_path / "evil-torch.pth"):
        with pytest.raises(CoEmoGenError, match="not a tensors-only weights file"):
            PublishedEmotionHead(bad, str(clip_dir), TAX)
        assert not marker.exists()
