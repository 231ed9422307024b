"""EmoGen as published (`coemogen train --method emogen`): what learns, its loss, its coefficients,
resuming, and every downstream command on an EmoGen run."""

import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from coemogen.data.manifest import ManifestRecord
from coemogen.data.readers import read_dataset
from coemogen.errors import CoEmoGenError
from coemogen.models.base import load_base_models
from coemogen.models.emogen import EmoGen, EmoGenConfig, load_emogen_run
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.taxonomy import Taxonomy
from coemogen.training.config import TrainingArguments
from coemogen.training.data import ManifestDataset, collate
from coemogen.training.emogen import (
    EmoGenDataset,
    EmoGenTrainingModule,
    attribute_coefficients,
    emogen_losses,
    target_attribute,
)
from coemogen.training.loop import train

TAX = Taxonomy.default()
SMALL = dict(emotion_dim=16, mapper_width=24, encoder_epochs=1, encoder_batch_size=8)


@pytest.fixture(scope="module")
def attribute_manifest(tiny_world, tmp_path_factory):
    """The tiny world's images with their EmoSet annotations as manifest `attributes`."""
    lines = [
        json.dumps({"image": str(it.path), "emotion": it.emotion, "caption": "x", "attributes": it.attributes})
        for it in read_dataset(tiny_world, TAX)
    ]
    path = tmp_path_factory.mktemp("emogen") / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(tiny_models, manifest, out, **kw):
    values = dict(
        manifest=str(manifest),
        out=str(out),
        method="emogen",
        pretrained_model_name_or_path=str(tiny_models[0]),
        clip_model_name_or_path=str(tiny_models[1]),
        max_train_steps=4,
        train_batch_size=4,
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
    )
    values.update(kw)
    return TrainingArguments(**values)


@pytest.fixture(scope="module")
def emogen_run(tiny_models, attribute_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("emogen-run") / "run"
    return train(_args(tiny_models, attribute_manifest, out), **SMALL)


def _record(emotion, scene=None, objects=None):
    attributes = {k: v for k, v in (("scene", scene), ("object", objects)) if v is not None}
    return ManifestRecord("x.png", emotion, "c", {"attributes": attributes} if attributes else {})


def test_coefficients_equal_a_hand_count():
    records = [
        _record("awe", "mountain"),
        _record("awe", "mountain"),
        _record("fear", "mountain"),
        _record("fear", None, ["Spider", "Web"]),  # no scene: the first object
        _record("sadness", None, ["spider"]),
        _record("anger"),  # no attributes: no target
    ]
    assert [target_attribute(r) for r in records] == ["mountain"] * 3 + ["spider", "spider", None]
    vocabulary, c = attribute_coefficients(records, TAX)
    assert vocabulary == ["mountain", "spider"]
    awe, fear, sadness = TAX.index("awe"), TAX.index("fear"), TAX.index("sadness")
    assert c["mountain"][awe] == pytest.approx(2 / 3) and c["mountain"][fear] == pytest.approx(1 / 3)
    assert c["spider"][fear] == 0.5 and c["spider"][sadness] == 0.5
    assert sum(c["mountain"]) == pytest.approx(1) and c["mountain"][sadness] == 0
    _, cut = attribute_coefficients(records, TAX, threshold=0.4)
    assert cut["mountain"][fear] == 0 and cut["mountain"][awe] == pytest.approx(2 / 3)


def test_losses_equal_hand_computations():
    torch.manual_seed(0)
    semantic, attr_embeds = torch.randn(2, 3), torch.randn(4, 3)
    l_ldm = torch.tensor([0.5, 0.25])
    attribute, coefficient = torch.tensor([2, -1]), torch.tensor([0.8, 0.9])  # sample 1 has no attribute
    labels = torch.tensor([1, 3])
    classifier = torch.nn.Linear(3, 8)
    out = emogen_losses(l_ldm, semantic, attr_embeds, attribute, coefficient, classifier, labels, 0.01, 0.5)

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    scores = [cos(semantic[0], attr_embeds[j]) for j in range(4)]
    l_attr0 = -scores[2] + math.log(sum(math.exp(s) for s in scores))
    logits = [classifier(semantic[i]).tolist() for i in range(2)]
    l_emo = [-logits[i][labels[i]] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(2)]
    per_sample = [
        (1 - 0.8) * 0.5 + 0.01 * 0.8 * l_attr0 + 0.5 * l_emo[0],
        (1 - 0) * 0.25 + 0 + 0.5 * l_emo[1],  # no attribute: c = 0 and L_attr = 0
    ]
    assert out["loss"].item() == pytest.approx(sum(per_sample) / 2, rel=1e-5)
    assert out["l_attr"].item() == pytest.approx(l_attr0 / 2, rel=1e-5)
    assert out["l_emo"].item() == pytest.approx(sum(l_emo) / 2, rel=1e-5)
    off = emogen_losses(l_ldm, semantic, attr_embeds, attribute, coefficient, classifier, labels, 0.01, 0.0)
    assert off["l_emo"].item() == 0  # their default emo_rate 0: L_emo is not computed
    # a manifest without attributes (no vocabulary): L_attr is 0 and the loss is L_LDM + L_emo
    none = torch.tensor([-1, -1])
    bare = emogen_losses(l_ldm, semantic, attr_embeds[:0], none, coefficient, classifier, labels, 0.01, 0.5)
    assert bare["l_attr"].item() == 0
    assert bare["loss"].item() == pytest.approx((0.5 + 0.25 + 0.5 * sum(l_emo)) / 2, rel=1e-5)


def test_only_the_mapper_receives_gradients(tiny_models, attribute_manifest):
    base = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    config = EmoGenConfig(TAX.to_dict(), 32, base.clip_config.projection_dim, "x", "y", 32, emo_rate=1.0, **SMALL)
    model = EmoGen(config)
    model.emotion_encoder.requires_grad_(False)
    model.clip_emotion_classifier.requires_grad_(False)
    records = [r for r in _read(attribute_manifest)][:4]
    images = ManifestDataset(records, TAX, 32)
    dataset = EmoGenDataset(images, torch.randn(4, 16), torch.tensor([0, 1, -1, 0]), torch.tensor([0.5, 1.0, 0, 0.2]))
    module = EmoGenTrainingModule(model, base, torch.randn(3, base.clip_config.projection_dim), random_flip=True)
    losses = module(collate([dataset[i] for i in range(4)]), torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert all(losses[k].item() > 0 for k in ("l_ldm", "l_attr", "l_emo"))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mapper.parameters())
    frozen = [base.unet, base.text_encoder, base.vae, base.clip, model.emotion_encoder, model.clip_emotion_classifier]
    assert all(p.grad is None for m in frozen for p in m.parameters())


def _read(manifest):
    from coemogen.data.manifest import read_manifest

    return read_manifest(manifest, TAX)


def test_an_emogen_run_trains_the_encoder_then_only_the_mapper(emogen_run, tiny_models, attribute_manifest, tmp_path):
    config = EmoGenConfig.load(emogen_run)
    assert config.method == "emogen" and config.emotion_encoder == "small-cnn" and config.encoder_image_size == 32
    with torch.random.fork_rng(devices=[]):  # train() builds the same initial weights from the seed
        torch.manual_seed(0)
        initial = EmoGen(config)
    trained, clusters = load_emogen_run(emogen_run, config)
    def changed(name):
        pairs = zip(getattr(initial, name).state_dict().values(), getattr(trained, name).state_dict().values())
        return any(not torch.equal(a, b) for a, b in pairs)

    assert changed("mapper") and changed("emotion_encoder")
    assert not changed("clip_emotion_classifier")  # only trained for L_emo (emo_rate > 0)
    assert clusters.means.shape == (8, 1, 16)  # one Gaussian per emotion in the emotion space
    # the encoder is trained before the mapper and not touched after: zero mapper steps, same encoder
    zero = train(_args(tiny_models, attribute_manifest, tmp_path / "zero", max_train_steps=0), **SMALL)
    assert _same(load_file(zero / "emotion_encoder.safetensors"), load_file(emogen_run / "emotion_encoder.safetensors"))
    attributes = json.loads((emogen_run / "attributes.json").read_text())
    assert attributes["vocabulary"] and attributes["records_with_attribute"] > 0
    assert not list(emogen_run.glob("hilora*")) and not list(emogen_run.glob("*.pt"))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_matches_uninterrupted(tiny_models, attribute_manifest, tmp_path):
    full = train(_args(tiny_models, attribute_manifest, tmp_path / "full", checkpointing_steps=2), **SMALL)
    part = _args(tiny_models, attribute_manifest, tmp_path / "part", max_train_steps=2, checkpointing_steps=2)
    train(part, **SMALL)
    part.max_train_steps, part.resume_from_checkpoint = 4, "latest"
    resumed = train(part, **SMALL)
    for name in ("mapper", "emotion_encoder", "clusters"):
        assert _same(load_file(full / f"{name}.safetensors"), load_file(resumed / f"{name}.safetensors")), name


def test_generate_evaluate_and_export_an_emogen_run(emogen_run, tiny_world, tmp_path):
    def cli(*argv):
        proc = subprocess.run([sys.executable, "-m", "coemogen.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    cli("generate", "--model", str(emogen_run), "--emotion", "all", "--num-images", "2", "--steps", "2",
        "--out", str(tmp_path / "gen"))  # fmt: skip
    assert len(list((tmp_path / "gen").glob("*/*_000[01].png"))) == 16
    cli("evaluate", "--images", str(tmp_path / "gen"), "--reference", str(tiny_world), "--out", str(tmp_path / "rep"),
        "--num-pairs", "4")  # fmt: skip
    assert "overall" in json.loads((tmp_path / "rep" / "metrics.json").read_text())
    cli("export", "--model", str(emogen_run), "--out", str(tmp_path / "exp"), "--emotions", "awe",
        "--num-embeddings", "1")  # fmt: skip
    awe = tmp_path / "exp" / "awe"
    assert not list(awe.glob("*lora*")) and not (awe / "awe.safetensors").exists()  # no LoRA: EmoGen has none
    pipe = CoEmoGenPipeline.from_pretrained(emogen_run, device="cpu")
    mean = load_file(awe / "learned_embeds" / "awe_mean.safetensors")["awe_mean"]
    expected = pipe.model.token_embeddings(pipe.clusters.means[TAX.index("awe"), :1])
    assert torch.allclose(mean, expected, atol=1e-6)
    sample = load_file(awe / "embeddings" / "awe_seed0.safetensors")["emb_params"]
    visual, _ = pipe.sample_visual_embeddings([{"awe": 1.0}], [torch.Generator().manual_seed(0)], 1.0)
    assert torch.allclose(sample, pipe.model.token_embeddings(visual), atol=1e-6)
    assert "EmoGen" in (awe / "README.md").read_text() and "<lora:" not in (awe / "README.md").read_text()


def test_method_flags_are_checked(tiny_models, attribute_manifest, tmp_path):
    from coemogen.cli.parser import build_parser
    from coemogen.training.config import split_training_flags

    parser = build_parser()
    base = ["train", "--manifest", "m.jsonl", "--out", "o"]
    with pytest.raises(CoEmoGenError, match="--lora_rank"):
        split_training_flags(parser.parse_args([*base, "--method", "emogen", "--lora_rank", "8"]))
    with pytest.raises(CoEmoGenError, match="--attr_rate"):
        split_training_flags(parser.parse_args([*base, "--attr_rate", "0.1"]))
    args, hyper = split_training_flags(parser.parse_args([*base, "--method", "emogen", "--attr_rate", "0.1"]))
    assert args.method == "emogen" and hyper == {"attr_rate": 0.1}
    with pytest.raises(CoEmoGenError, match="emogen_mapper"):
        EmoGenConfig(TAX.to_dict(), 32, 32, "x", "y", 32, emogen_mapper="Transformer")
    with pytest.raises(CoEmoGenError, match="not a torchvision model"):
        EmoGen(EmoGenConfig(TAX.to_dict(), 32, 32, "x", "y", 32, emotion_encoder="no_such_net"))


def test_torchvision_backbone_by_flag():
    config = EmoGenConfig(TAX.to_dict(), 32, 32, "x", "y", 32, emotion_encoder="resnet18", encoder_image_size=32)
    model = EmoGen(config)
    assert model.emotion_encoder.features(torch.rand(2, 3, 32, 32)).shape == (2, config.emotion_dim)
    assert model.emotion_encoder(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_the_web_app_serves_an_emogen_run(emogen_run):
    from coemogen.web.app import CoEmoGenWebApp
    from coemogen.web.limits import WebLimits

    app = CoEmoGenWebApp.from_pretrained(emogen_run, WebLimits(concurrency=1), device="cpu")
    gallery, metadata, archive = app.handle("fear", "", 3, 2, 5.0, 1.0, 2, *[0.0] * 8)
    assert len(gallery) == 2 and [m["emotion"] for m in metadata] == ["fear", "fear"] and archive.endswith(".zip")
