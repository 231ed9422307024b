import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from coemogen.data.manifest import SkipCounter, read_manifest
from coemogen.errors import CoEmoGenError
from coemogen.loaders import load_base_models
from coemogen.models.hilora import hilora_layers
from coemogen.pipeline import CoEmoGenPipeline
from coemogen.taxonomy import Taxonomy
from coemogen.trainer import TrainArgs, train


def _args(tiny_models, world, out, **kw):
    base = dict(
        manifest=str(world / "manifest.jsonl"),
        out=str(out),
        pretrained_model_name_or_path=str(tiny_models[0]),
        clip_model_name_or_path=str(tiny_models[1]),
        max_train_steps=4,
        train_batch_size=4,
        checkpointing_steps=0,
        mapper_hidden_dim=32,
        report_to="none",
    )
    base.update(kw)
    return TrainArgs(**base)


@pytest.fixture(scope="module")
def trained_run(tiny_models, tiny_world, tmp_path_factory):
    return train(_args(tiny_models, tiny_world, tmp_path_factory.mktemp("run") / "run", max_train_steps=3))


def _weights(run):
    return {name: load_file(run / f"{name}.safetensors") for name in ("mapper", "perception_encoder", "hilora")}


def test_only_trainable_parts_change(tiny_models, tiny_world, tmp_path):
    # A manifest of awe only: the awe and positive adapters are the selected ones.
    lines = [json.loads(x) for x in (tiny_world / "manifest.jsonl").read_text().splitlines()]
    awe = [dict(x, image=str(tiny_world / x["image"])) for x in lines if x["emotion"] == "awe"]
    manifest = tmp_path / "awe.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in awe))
    before = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    run = train(_args(tiny_models, tiny_world, tmp_path / "run", manifest=str(manifest), max_train_steps=3))
    after = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    for name in ("vae", "unet", "text_encoder", "clip"):
        a, b = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name  # the base files are untouched
    weights = _weights(run)
    torch.manual_seed(0)  # the trainer seeds its initial weights with --seed 0
    from coemogen.modeling import CoEmoGen, CoEmoGenConfig

    fresh = CoEmoGen(CoEmoGenConfig.load(run))
    assert not torch.equal(fresh.mapper.state_dict()["net.0.weight"], weights["mapper"]["net.0.weight"])
    assert not torch.equal(fresh.perception_encoder.to_q.weight, weights["perception_encoder"]["to_q.weight"])
    tax, r = Taxonomy.default(), 4
    selected = [tax.index("awe"), tax.num_emotions + tax.group_index_of("awe")]
    for key, value in weights["hilora"].items():
        if key.endswith("lora_B"):
            for a in range(10):
                block = value[:, a * r : (a + 1) * r]
                assert (torch.count_nonzero(block) > 0) == (a in selected), (key, a)


def test_frozen_weights_bit_identical_in_memory(tiny_models, tiny_world):
    from coemogen.modeling import CoEmoGen, CoEmoGenConfig
    from coemogen.trainer import CoEmoGenTrainingModule, ManifestDataset, collate, trainable_parameters

    base = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    frozen = {
        f"{n}.{k}": v.clone()
        for n in ("vae", "unet", "text_encoder", "clip")
        for k, v in getattr(base, n).state_dict().items()
    }
    tax = Taxonomy.default()
    config = CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, mapper_hidden_dim=32)
    model = CoEmoGen(config)
    gate = model.inject_into(base.unet)
    params = trainable_parameters(model, base.unet)
    for p in params.values():
        p.requires_grad_(True)
    module = CoEmoGenTrainingModule(model, base, gate, 1.0, "{}")
    opt = torch.optim.AdamW(params.values(), lr=1e-2)
    records = read_manifest(tiny_world / "manifest.jsonl", tax)
    batch = collate([ManifestDataset(records, tax, 32)[i] for i in range(0, 32, 4)])
    for step in range(3):
        loss = module(batch["pixels"], batch["labels"], batch["captions"], torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n in ("vae", "unet", "text_encoder", "clip"):
        for k, v in getattr(base, n).state_dict().items():
            if "lora_" not in k:  # HiLoRA wraps each target as `.base`
                assert torch.equal(v, frozen[f"{n}.{k}".replace(".base.", ".")]), f"{n}.{k}"


def test_l_sem_falls_on_a_fixed_batch(tiny_models, tiny_world):
    from coemogen.modeling import CoEmoGen, CoEmoGenConfig
    from coemogen.trainer import CoEmoGenTrainingModule, ManifestDataset, collate, trainable_parameters

    torch.manual_seed(0)
    base = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    tax = Taxonomy.default()
    model = CoEmoGen(CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, mapper_hidden_dim=32))
    gate = model.inject_into(base.unet)
    params = trainable_parameters(model, base.unet)
    for p in params.values():
        p.requires_grad_(True)
    module = CoEmoGenTrainingModule(model, base, gate, 1.0, "{}")
    opt = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=1e-2)
    records = read_manifest(tiny_world / "manifest.jsonl", tax)
    batch = collate([ManifestDataset(records, tax, 32)[i] for i in range(0, 32, 4)])
    history = []
    for step in range(25):
        losses = module(batch["pixels"], batch["labels"], batch["captions"], torch.Generator().manual_seed(step))
        history.append(losses["l_sem"].item())
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    assert history[-1] < history[0] * 0.7, history


def test_resume_matches_uninterrupted(tiny_models, tiny_world, tmp_path):
    full = train(_args(tiny_models, tiny_world, tmp_path / "full", max_train_steps=4, checkpointing_steps=2))
    part = _args(tiny_models, tiny_world, tmp_path / "part", max_train_steps=2, checkpointing_steps=2)
    train(part)
    part.max_train_steps, part.resume_from_checkpoint = 4, "latest"
    resumed = train(part)
    a, b = _weights(full), _weights(resumed)
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)


def test_checkpoints_total_limit(tiny_models, tiny_world, tmp_path):
    run = train(
        _args(
            tiny_models, tiny_world, tmp_path / "r", max_train_steps=3, checkpointing_steps=1, checkpoints_total_limit=2
        )
    )
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]


def test_reload_regenerates_identical_images(trained_run):
    a = CoEmoGenPipeline.from_pretrained(trained_run)("awe", num_images=2, seed=7, num_inference_steps=3)
    b = CoEmoGenPipeline.from_pretrained(trained_run)("awe", num_images=2, seed=7, num_inference_steps=3)
    c = CoEmoGenPipeline.from_pretrained(trained_run)("awe", num_images=2, seed=8, num_inference_steps=3)
    arr = [torch.tensor([list(im.getdata()) for im in out.images]) for out in (a, b, c)]
    assert torch.equal(arr[0], arr[1])
    assert not torch.equal(arr[0], arr[2])
    assert a.metadata[0]["seed"] == 7 and a.metadata[1]["seed"] == 8


def test_one_hot_mix_equals_plain_emotion(trained_run):
    pipe = CoEmoGenPipeline.from_pretrained(trained_run)
    # Make the adapters matter so that a wrong gate would change the pixels.
    for _, layer in hilora_layers(pipe.base.unet):
        torch.nn.init.normal_(layer.lora_B, std=0.5)
    plain = pipe("fear", num_images=2, seed=1, num_inference_steps=3)
    mixed = pipe("fear:1.0,awe:0", num_images=2, seed=1, num_inference_steps=3)
    other = pipe("fear:0.5,awe:0.5", num_images=2, seed=1, num_inference_steps=3)
    to_t = lambda out: torch.tensor([list(im.getdata()) for im in out.images])  # noqa: E731
    assert torch.equal(to_t(plain), to_t(mixed))
    assert not torch.equal(to_t(plain), to_t(other))
    # A batch mixing emotions gives each image what it gets alone (per-sample gates).
    both = pipe(["fear", "awe"], num_images=2, seed=1, num_inference_steps=3)
    alone = pipe("awe", num_images=2, seed=1, num_inference_steps=3)
    torch.testing.assert_close(to_t(both)[1].float(), to_t(alone)[1].float(), atol=2, rtol=0)


def test_run_from_another_taxonomy_is_refused(trained_run, tmp_path):
    path = tmp_path / "artemis.yaml"
    path.write_text(
        "groups:\n  positive: [amusement, awe, contentment, excitement]\n"
        "  negative: [anger, disgust, fear, sadness]\n  neutral: [something else]\n"
    )
    with pytest.raises(CoEmoGenError, match="taxonomy"):
        CoEmoGenPipeline.from_pretrained(trained_run, taxonomy=Taxonomy.from_file(path))


def test_manifest_bad_lines_are_counted_skips(tiny_world, tmp_path):
    good = (tiny_world / "manifest.jsonl").read_text().splitlines()[0]
    item = json.loads(good)
    item["image"] = str(tiny_world / item["image"])
    lines = [
        json.dumps(item),
        json.dumps({k: v for k, v in item.items() if k != "caption"}),
        json.dumps(dict(item, image="nope.jpg")),
        json.dumps(dict(item, emotion="boredom")),
        "{not json",
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines))
    skips = SkipCounter()
    records = read_manifest(path, Taxonomy.default(), skips)
    assert len(records) == 1 and skips.total == 4
    assert set(skips.reasons) == {"missing field", "missing image file", "unknown emotion", "malformed JSON line"}


def test_training_with_no_usable_records_is_a_clear_error(tiny_models, tiny_world, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"image": "x.jpg", "emotion": "awe"}) + "\n")
    with pytest.raises(CoEmoGenError, match="no usable records"):
        train(_args(tiny_models, tiny_world, tmp_path / "r", manifest=str(path)))


def test_method_configurations_change_the_model(tiny_models, tiny_world, tmp_path):
    from coemogen.modeling import CoEmoGen, CoEmoGenConfig

    tax = Taxonomy.default()
    shared = CoEmoGen(CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, shared_lora=True))
    w = torch.eye(8)[[0, 5]]
    assert shared.num_adapters == 1 and torch.equal(shared.gates(w), torch.ones(2, 1))
    ti = CoEmoGen(CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, perception_encoder=False))
    a = ti.visual_embedding(w, torch.randn(2, 5, 32))
    b = ti.visual_embedding(w, torch.randn(2, 5, 32))
    assert torch.equal(a, b)  # one learned token per emotion: image features play no part
    run = train(_args(tiny_models, tiny_world, tmp_path / "r", max_train_steps=2, shared_lora=True))
    for key, value in load_file(run / "hilora.safetensors").items():  # one adapter of rank 4 per layer
        assert (value.shape[0] if key.endswith("lora_A") else value.shape[1]) == 4, key


def test_bf16_and_gradient_checkpointing_train(tiny_models, tiny_world, tmp_path):
    run = train(
        _args(
            tiny_models,
            tiny_world,
            tmp_path / "r",
            max_train_steps=2,
            mixed_precision="bf16",
            gradient_checkpointing=True,
            validation_steps=2,
            report_to="tensorboard",
        )
    )
    hilora = load_file(run / "hilora.safetensors")
    assert all(v.dtype == torch.float32 for v in hilora.values())  # adapters stay in fp32
    assert (run / "validation" / "step-000002.png").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))


def test_refit_clusters_with_mixture_components(trained_run, tiny_world, tmp_path):
    import shutil

    from coemogen.trainer import refit_clusters

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    clusters = refit_clusters(run, tiny_world / "manifest.jsonl", components=2)
    assert clusters.weights.shape == (8, 2) and torch.allclose(clusters.weights.sum(1), torch.ones(8))
    pipe = CoEmoGenPipeline.from_pretrained(run)
    assert pipe.model.config.cluster_components == 2
    out = pipe("sadness", num_images=3, seed=0, num_inference_steps=2)
    assert {m["cluster_component"]["sadness"] for m in out.metadata} <= {0, 1}


def test_cluster_temperature_zero_gives_the_emotion_mean(trained_run):
    pipe = CoEmoGenPipeline.from_pretrained(trained_run)
    mean = pipe.clusters.means[Taxonomy.default().index("awe"), 0]
    ev, _ = pipe.sample_visual_embeddings([{"awe": 1.0}] * 3, [0, 1, 2], temperature=0.0)
    assert torch.allclose(ev, mean.expand(3, -1))
    spread, _ = pipe.sample_visual_embeddings([{"awe": 1.0}] * 3, [0, 1, 2], temperature=1.0)
    assert not torch.allclose(spread[0], spread[1])


def test_run_default_cluster_temperature_is_set_by_the_clusters_command(trained_run, tiny_world, tmp_path):
    import shutil

    from coemogen.cli import main

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    fitted = CoEmoGenPipeline.from_pretrained(run)("awe", num_images=2, seed=0, num_inference_steps=2)
    assert [m["cluster_temperature"] for m in fitted.metadata] == [1.0, 1.0]  # the paper's fitted spread
    main(["clusters", "--model", str(run), "--manifest", str(tiny_world / "manifest.jsonl"), "--temperature", "0"])
    assert json.loads((run / "config.json").read_text())["cluster_temperature"] == 0.0
    pipe = CoEmoGenPipeline.from_pretrained(run)
    default = pipe("awe", num_images=2, seed=0, num_inference_steps=2)
    explicit = pipe("awe", num_images=2, seed=0, num_inference_steps=2, cluster_temperature=0.0)
    assert [m["cluster_temperature"] for m in default.metadata] == [0.0, 0.0]
    assert all((np.asarray(a) == np.asarray(b)).all() for a, b in zip(default.images, explicit.images))
    assert any((np.asarray(a) != np.asarray(b)).any() for a, b in zip(default.images, fitted.images))
