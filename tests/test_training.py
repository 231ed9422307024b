import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from coemogen.data.manifest import SkipCounter, read_manifest
from coemogen.errors import CoEmoGenError
from coemogen.models.base import load_base_models
from coemogen.models.coemogen import CoEmoGen, CoEmoGenConfig
from coemogen.models.hilora import adapter_weights, hilora_layers
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.taxonomy import Taxonomy
from coemogen.training.coemogen import CoEmoGenTrainingModule, trainable_parameters
from coemogen.training.config import TrainingArguments
from coemogen.training.data import ManifestDataset, collate
from coemogen.training.loop import build, make_accelerator, train


def _args(tiny_models, world, out, **kw):
    base = dict(
        manifest=str(world / "manifest.jsonl"),
        out=str(out),
        pretrained_model_name_or_path=str(tiny_models[0]),
        clip_model_name_or_path=str(tiny_models[1]),
        max_train_steps=4,
        train_batch_size=4,
        checkpointing_steps=0,
        report_to="none",
    )
    base.update(kw)
    return TrainingArguments(**base)


def _train(args: TrainingArguments, **model):
    return train(args, **{"mapper_hidden_dim": 32, **model})


@pytest.fixture(scope="module")
def trained_run(tiny_models, tiny_world, tmp_path_factory):
    return _train(_args(tiny_models, tiny_world, tmp_path_factory.mktemp("run") / "run", max_train_steps=3))


def _module(tiny_models, **config):
    """A fresh training module on the tiny models, with its trainable parameters."""
    base = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    model = CoEmoGen(CoEmoGenConfig(Taxonomy.default().to_dict(), 32, 32, "x", "y", 32, mapper_hidden_dim=32, **config))
    model.inject_into(base.unet)
    params = trainable_parameters(model, base.unet)
    for p in params.values():
        p.requires_grad_(True)
    return CoEmoGenTrainingModule(model, base, 1.0), base, model, params


def _step(module, model, batch, seed):
    with adapter_weights(module.unet, model.gates(model.one_hot(batch["labels"]))):
        losses = module(batch, torch.Generator().manual_seed(seed))
        losses["loss"].backward()
    return losses


def _weights(run):
    return {name: load_file(run / f"{name}.safetensors") for name in ("mapper", "perception_encoder", "hilora")}


def test_only_trainable_parts_change(tiny_models, tiny_world, tmp_path):
    # A manifest of awe only: the awe and positive adapters are the selected ones.
    lines = [json.loads(x) for x in (tiny_world / "manifest.jsonl").read_text().splitlines()]
    awe = [dict(x, image=str(tiny_world / x["image"])) for x in lines if x["emotion"] == "awe"]
    manifest = tmp_path / "awe.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in awe))
    before = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    run = _train(_args(tiny_models, tiny_world, tmp_path / "run", manifest=str(manifest), max_train_steps=3))
    after = load_base_models(str(tiny_models[0]), str(tiny_models[1]))
    for name in ("vae", "unet", "text_encoder", "clip"):
        a, b = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name  # the base files are untouched
    weights = _weights(run)
    torch.manual_seed(0)  # the trainer draws its initial weights from --seed 0
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
    module, base, model, params = _module(tiny_models)
    frozen = {
        f"{n}.{k}": v.clone()
        for n in ("vae", "unet", "text_encoder", "clip")
        for k, v in getattr(base, n).state_dict().items()
        if "lora_" not in k
    }
    tax = Taxonomy.default()
    opt = torch.optim.AdamW(params.values(), lr=1e-2)
    records = read_manifest(tiny_world / "manifest.jsonl", tax)
    batch = collate([ManifestDataset(records, tax, 32)[i] for i in range(0, 32, 4)])
    for step in range(3):
        opt.zero_grad()
        _step(module, model, batch, step)
        opt.step()
    for n in ("vae", "unet", "text_encoder", "clip"):
        for k, v in getattr(base, n).state_dict().items():
            if "lora_" not in k:
                assert torch.equal(v, frozen[f"{n}.{k}"]), f"{n}.{k}"


def test_l_sem_falls_on_a_fixed_batch(tiny_models, tiny_world):
    torch.manual_seed(0)
    module, base, model, params = _module(tiny_models)
    tax = Taxonomy.default()
    opt = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=1e-2)
    records = read_manifest(tiny_world / "manifest.jsonl", tax)
    batch = collate([ManifestDataset(records, tax, 32)[i] for i in range(0, 32, 4)])
    history = []
    for step in range(25):
        opt.zero_grad()
        history.append(_step(module, model, batch, step)["l_sem"].item())
        opt.step()
    assert history[-1] < history[0] * 0.7, history


def test_training_forward_without_adapter_selection_is_refused(tiny_models, tiny_world):
    module, base, model, params = _module(tiny_models)
    tax = Taxonomy.default()
    batch = collate([ManifestDataset(read_manifest(tiny_world / "manifest.jsonl", tax), tax, 32)[i] for i in (0, 4)])
    with pytest.raises(RuntimeError, match="no adapter selected"):
        module(batch, torch.Generator().manual_seed(0))


def test_initial_weights_come_from_the_seed_not_the_global_rng(tiny_models, tiny_world, tmp_path):
    torch.manual_seed(123)
    a = _train(_args(tiny_models, tiny_world, tmp_path / "a", max_train_steps=1))
    torch.manual_seed(456)
    b = _train(_args(tiny_models, tiny_world, tmp_path / "b", max_train_steps=1))
    for name, weights in _weights(a).items():
        for k, v in weights.items():
            assert torch.equal(v, _weights(b)[name][k]), (name, k)


def test_resume_matches_uninterrupted(tiny_models, tiny_world, tmp_path):
    full = _train(_args(tiny_models, tiny_world, tmp_path / "full", max_train_steps=4, checkpointing_steps=2))
    part = _args(tiny_models, tiny_world, tmp_path / "part", max_train_steps=2, checkpointing_steps=2)
    _train(part)
    part.max_train_steps, part.resume_from_checkpoint = 4, "latest"
    resumed = _train(part)
    a, b = _weights(full), _weights(resumed)
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)


def test_checkpoints_total_limit(tiny_models, tiny_world, tmp_path):
    run = _train(
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
        _train(_args(tiny_models, tiny_world, tmp_path / "r", manifest=str(path)))


def test_method_configurations_change_the_model(tiny_models, tiny_world, tmp_path):
    tax = Taxonomy.default()
    shared = CoEmoGen(CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, shared_lora=True))
    w = torch.eye(8)[[0, 5]]
    assert shared.num_adapters == 1 and torch.equal(shared.gates(w), torch.ones(2, 1))
    ti = CoEmoGen(CoEmoGenConfig(tax.to_dict(), 32, 32, "x", "y", 32, perception_encoder=False))
    a = ti.visual_embedding(w, torch.randn(2, 5, 32))
    b = ti.visual_embedding(w, torch.randn(2, 5, 32))
    assert torch.equal(a, b)  # one learned token per emotion: image features play no part
    run = _train(_args(tiny_models, tiny_world, tmp_path / "r", max_train_steps=2), shared_lora=True)
    for key, value in load_file(run / "hilora.safetensors").items():  # one adapter of rank 4 per layer
        assert (value.shape[0] if key.endswith("lora_A") else value.shape[1]) == 4, key


def test_bf16_and_gradient_checkpointing_train(tiny_models, tiny_world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(
        _args(
            tiny_models,
            tiny_world,
            tmp_path / "r",
            max_train_steps=8,
            learning_rate=5e-3,
            mixed_precision="bf16",
            gradient_checkpointing=True,
            validation_steps=8,
            report_to="tensorboard",
        )
    )
    hilora = load_file(run / "hilora.safetensors")
    assert all(v.dtype == torch.float32 for v in hilora.values())  # adapters stay in fp32
    assert any(torch.count_nonzero(v) for k, v in hilora.items() if k.endswith("lora_B"))  # they learned
    assert (run / "validation" / "step-000008.png").is_file()
    events = EventAccumulator(str(next((run / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    losses = [e.value for e in events.Scalars("loss")]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses  # L_SEM dominates and falls within a few steps


def test_validation_steps_zero_writes_no_image(tiny_models, tiny_world, tmp_path):
    run = _train(_args(tiny_models, tiny_world, tmp_path / "r", max_train_steps=1, validation_steps=0))
    assert not (run / "final_grid.png").exists() and not (run / "validation").exists()
    assert (run / "clusters.safetensors").is_file()


def test_textual_inversion_configuration_leaves_the_encoder_out_of_training(tiny_models):
    _, _, model, params = _module(tiny_models, perception_encoder=False)
    assert not any(k.startswith("model.perception_encoder") for k in params)
    assert not any(p.requires_grad for p in model.perception_encoder.parameters())


def test_refit_clusters_with_mixture_components(trained_run, tiny_world, tmp_path):
    import shutil

    from coemogen.training.coemogen import refit_clusters

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
    generators = lambda: [torch.Generator().manual_seed(s) for s in range(3)]  # noqa: E731
    ev, _ = pipe.sample_visual_embeddings([{"awe": 1.0}] * 3, generators(), temperature=0.0)
    assert torch.allclose(ev, mean.expand(3, -1))
    spread, _ = pipe.sample_visual_embeddings([{"awe": 1.0}] * 3, generators(), temperature=1.0)
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


def test_train_flags_and_configuration_dataclasses_agree():
    from dataclasses import fields

    from coemogen.cli.parser import build_parser

    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    from coemogen.models.emogen import EmoGenConfig

    dests = {a.dest for a in train_parser._actions if a.dest != "help"}
    methods = (CoEmoGenConfig, EmoGenConfig)
    expected = {f.name for f in fields(TrainingArguments)} | {f.name for c in methods for f in c.hyperparameters()}
    assert dests == expected
    derived = {f.name for f in fields(CoEmoGenConfig)} - {f.name for f in CoEmoGenConfig.hyperparameters()}
    assert derived == {"taxonomy", "embed_dim", "image_dim", "pretrained_model_name_or_path",
                       "clip_model_name_or_path", "resolution", "pretrained_vae_model_name_or_path",
                       "method", "tuning"}  # fmt: skip
    for f in (*fields(TrainingArguments), *fields(CoEmoGenConfig), *fields(EmoGenConfig)):
        assert f.metadata.get("help"), f.name  # every field says what it is
    assert "--lora_alpha" in train_parser.format_help() and "--method" in train_parser.format_help()


def test_model_flags_reach_the_run_config(tiny_models, tiny_world, tmp_path):
    from coemogen.cli import main

    out = tmp_path / "run"
    argv = ["train", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(out)]
    argv += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    argv += ["--max_train_steps", "1", "--checkpointing_steps", "0", "--report_to", "none", "--validation_steps", "0"]
    argv += ["--mapper_hidden_dim", "16", "--lora_rank", "2", "--lora_alpha", "8", "--run_name", "my-ablation"]
    argv += ["--group_lora", "false", "--lora_targets", "to_q", "to_v"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["lora_rank"], config["lora_alpha"], config["run_name"]) == (2, 8.0, "my-ablation")
    assert config["method"] == "coemogen"
    assert config["group_lora"] is False and config["lora_targets"] == ["to_q", "to_v"]
    assert json.loads((out / "training_args.json").read_text())["max_train_steps"] == 1
    pipe = CoEmoGenPipeline.from_pretrained(out)
    layers = [layer for _, layer in hilora_layers(pipe.base.unet)]
    assert layers and all(layer.scaling == 4.0 for layer in layers)  # alpha 8 / rank 2, not forced to the rank


def test_lora_alpha_defaults_to_the_rank_and_refuses_zero():
    tax = Taxonomy.default().to_dict()
    assert CoEmoGenConfig(tax, 32, 32, "x", "y", 32, lora_rank=8).lora_alpha == 8.0
    with pytest.raises(CoEmoGenError, match="lora_alpha must be positive"):
        CoEmoGenConfig(tax, 32, 32, "x", "y", 32, lora_alpha=0)


def test_per_image_generators_do_not_depend_on_batching(trained_run):
    pipe = CoEmoGenPipeline.from_pretrained(trained_run)
    to_a = lambda out: np.stack([np.asarray(im) for im in out.images])  # noqa: E731
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(3)]  # noqa: E731
    a = pipe("awe", num_images=3, generator=gens(), num_inference_steps=2)
    b = pipe("awe", num_images=3, generator=gens(), num_inference_steps=2, batch_size=1)
    # equal up to the last bit of batched convolutions (a pixel level or two after rounding)
    assert np.abs(to_a(a).astype(int) - to_a(b).astype(int)).max() <= 2
    c = pipe("awe", num_images=3, generator=torch.Generator().manual_seed(10), num_inference_steps=2)
    assert np.abs(to_a(a).astype(int) - to_a(c).astype(int)).max() > 10  # one shared generator: other draws
    with pytest.raises(CoEmoGenError, match="one per image"):
        pipe("awe", num_images=3, generator=gens()[:2])


def test_inference_loads_no_clip(trained_run):
    pipe = CoEmoGenPipeline.from_pretrained(trained_run)
    assert pipe.base.clip is None


def test_public_api():
    import coemogen

    assert coemogen.CoEmoGenPipeline is CoEmoGenPipeline and coemogen.CoEmoGen is CoEmoGen
    assert coemogen.Taxonomy is Taxonomy and callable(coemogen.load_run)
    with pytest.raises(AttributeError):
        coemogen.NotAThing  # noqa: B018


def test_random_crops_come_from_the_draw_and_centre_crop_is_the_centre(tmp_path):
    from PIL import Image

    from coemogen.data.manifest import ManifestRecord

    wide = np.zeros((32, 96, 3), dtype=np.uint8)
    wide[:, :, 0] = np.arange(96, dtype=np.uint8)[None, :] * 2  # red encodes the column
    Image.fromarray(wide).save(tmp_path / "wide.png")
    records = [ManifestRecord(tmp_path / "wide.png", "awe", "a wide image")]
    random_crops = ManifestDataset(records, Taxonomy.default(), 32, center_crop=False, seed=1)
    left_edges = {round(float(random_crops[(0, d)]["pixels"][0, 0, 0]) * 255 / 2) for d in range(20)}
    assert len(left_edges) > 5 and all(0 <= x <= 64 for x in left_edges)
    assert torch.equal(random_crops[(0, 7)]["pixels"], random_crops[(0, 7)]["pixels"])  # the draw decides
    centre = ManifestDataset(records, Taxonomy.default(), 32, center_crop=True)
    assert round(float(centre[(0, 7)]["pixels"][0, 0, 0]) * 255 / 2) == 32
    assert torch.equal(random_crops[0]["pixels"], centre[0]["pixels"])  # no draw (clusters, validation): centre


def test_fast_path_flags_reach_the_components(tiny_models, tiny_world, tmp_path, monkeypatch):
    import sys

    args = _args(tiny_models, tiny_world, tmp_path / "run", channels_last=True)
    run, optimizer = build(args, Taxonomy.default(), make_accelerator(args), mapper_hidden_dim=32)
    conv = run.base.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert isinstance(optimizer, torch.optim.AdamW)
    processors = {type(p).__name__ for p in run.base.unet.attn_processors.values()}
    assert processors == {"AttnProcessor2_0"}  # PyTorch's scaled-dot-product attention
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as where bitsandbytes is not installed
    with pytest.raises(CoEmoGenError, match="pip install bitsandbytes"):
        args = _args(tiny_models, tiny_world, tmp_path / "r2", use_8bit_adam=True)
        build(args, Taxonomy.default(), make_accelerator(args))


def test_switch_flags_take_no_value():
    from coemogen.cli.parser import build_parser

    argv = ["train", "--manifest", "m", "--out", "o", "--random_flip", "--center_crop", "--allow_tf32", "--compile"]
    a = build_parser().parse_args(argv)
    assert a.random_flip and a.center_crop and a.allow_tf32 and a.compile_unet and not a.use_8bit_adam
