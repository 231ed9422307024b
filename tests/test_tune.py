"""`coemogen tune`: emotion reward tuning of a trained run on the training engine."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from coemogen.cli import main
from coemogen.errors import CoEmoGenError
from coemogen.evaluation.emotion_head import train_emotion_head
from coemogen.models.hilora import hilora_layers
from coemogen.taxonomy import Taxonomy
from coemogen.training.config import TrainingArguments
from coemogen.training.loop import build, make_accelerator, train
from coemogen.training.rewards import shaped_reward
from coemogen.training.tune import tune

MIKELS = Taxonomy.default()


def _sources(tiny_models):
    return {"pretrained_model_name_or_path": str(tiny_models[0]), "clip_model_name_or_path": str(tiny_models[1])}


def _args(world, out, **overrides):
    settings = dict(
        manifest=str(world / "manifest.jsonl"), out=str(out), train_batch_size=4, validation_steps=0,
        report_to="none", checkpointing_steps=0,
    )  # fmt: skip
    return TrainingArguments(**{**settings, **overrides})


@pytest.fixture(scope="module")
def start_run(tiny_models, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("start") / "run"
    return train(_args(tiny_world, out, max_train_steps=2, **_sources(tiny_models)), mapper_hidden_dim=32)


@pytest.fixture(scope="module")
def reward_head(tiny_models, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward") / "head"
    train_emotion_head(tiny_world, out, tiny_models[1], MIKELS, steps=20)
    return out


def _tune(start_run, world, out, reward_head, **options):
    base = dict(max_train_steps=2, train_batch_size=4, num_inference_steps=3, validation_steps=0, report_to="none")
    return tune(world / "manifest.jsonl", out, start_run, reward_model=str(reward_head), **{**base, **options})


def _weights(run):
    return {name: load_file(run / f"{name}.safetensors") for name in ("mapper", "perception_encoder", "hilora")}


def test_polarity_shaping_is_emoctrls_and_target_shaping_is_the_target_probability():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.05, 0.05]])
    membership = MIKELS.membership()
    # target awe: 0.8 * 0.2 + 0.2 * (0.5 * 0.7 - 0.5 * 0.3)
    assert shaped_reward(p, torch.tensor([1]), membership, "polarity").item() == pytest.approx(0.16 + 0.04)
    assert shaped_reward(p, torch.tensor([6]), membership, "target").item() == pytest.approx(0.05)
    # a negative target: its own group holds 0.3 of the mass
    assert shaped_reward(p, torch.tensor([4]), membership, "polarity").item() == pytest.approx(0.08 + 0.2 * (-0.2))


def test_the_rewards_gradient_reaches_only_the_selected_adapters(start_run, reward_head, tiny_world, tmp_path):
    """A batch of awe alone, reward only: awe's and the positive group's adapters get gradients, no
    other adapter does, nor the mapper and encoder (frozen without --tune_encoders)."""
    args = _args(tiny_world, tmp_path / "t", method="tune", init_from=str(start_run), max_train_steps=1)
    accelerator = make_accelerator(args)
    run, _ = build(args, MIKELS, accelerator, reward_model=str(reward_head), anchor_weight=0.0, kl_weight=0.0,
                   num_inference_steps=3, truncation_steps=1)  # fmt: skip
    assert set(run.params) == {name for name in run.params if name.startswith("unet.")}
    awe = [i for i, label in enumerate(run.dataset.labels()) if label == MIKELS.index("awe")][:2]
    from coemogen.training.data import collate

    batch = collate([run.dataset[i] for i in awe])
    with run.select_adapters(batch):
        losses = run.module(batch, torch.Generator().manual_seed(0))
        losses["loss"].backward()
    assert set(losses) == {"loss", "reward", "emotion_reward", "reward_accuracy", "l_kl"}
    selected = {MIKELS.index("awe"), MIKELS.num_emotions + MIKELS.group_names.index("positive")}
    for _, layer in hilora_layers(run.base.unet):
        rank = layer.rank
        per_adapter = layer.lora_B.grad.abs().view(layer.lora_B.shape[0], -1, rank).sum(dim=(0, 2))
        assert {int(i) for i in torch.nonzero(per_adapter).flatten()} <= selected
    grads = [layer.lora_B.grad.abs().sum() for _, layer in hilora_layers(run.base.unet)]
    assert sum(grads) > 0
    assert all(p.grad is None for p in run.model.parameters())


def test_images_are_sampled_and_scored_at_the_runs_resolution(tiny_models, reward_head, tiny_world, tmp_path):
    """A run trained below the model's own resolution is tuned at its resolution: the step's images
    are that size (not the U-Net's sample size, whose decoder graph at SD1.5's 512 px ran a 24 GB
    CPU out of memory), and so are the anchor's; another --resolution is refused."""
    start = train(_args(tiny_world, tmp_path / "start", max_train_steps=1, resolution=16, center_crop=True,
                        **_sources(tiny_models)), mapper_hidden_dim=32)  # fmt: skip
    args = _args(tiny_world, tmp_path / "t", method="tune", init_from=str(start), max_train_steps=1, center_crop=True)
    run, _ = build(args, MIKELS, make_accelerator(args), reward_model=str(reward_head), num_inference_steps=3)
    assert run.base.default_resolution == 32
    sizes = []
    run.module.reward.register_forward_pre_hook(lambda module, inputs: sizes.append(tuple(inputs[0].shape[-2:])))
    from coemogen.training.data import collate

    batch = collate([run.dataset[i] for i in range(2)])
    with run.select_adapters(batch):
        run.module(batch, torch.Generator().manual_seed(0))["loss"].backward()
    assert sizes == [(16, 16)]
    assert tuple(batch["pixels"].shape[-2:]) == (16, 16)
    with pytest.raises(CoEmoGenError, match="trained at 16 px; drop --resolution 32"):
        build(replace(args, resolution=32), MIKELS, make_accelerator(args), reward_model=str(reward_head))


def test_anchor_alone_equals_continued_training_on_the_manifest(start_run, reward_head, tiny_world, tmp_path):
    """With the reward and the penalty off and the encoders tuned, tuning is training continued from
    the run on the manifest, bit for bit."""
    continued = train(_args(tiny_world, tmp_path / "continued", max_train_steps=2, init_from=str(start_run),
                            learning_rate=1e-4))  # fmt: skip
    tuned = _tune(start_run, tiny_world, tmp_path / "tuned", reward_head, reward_weight=0.0, kl_weight=0.0,
                  tune_encoders=True)  # fmt: skip
    for name, state in _weights(continued).items():
        other = _weights(tuned)[name]
        assert all(torch.equal(state[k], other[k]) for k in state), name
    assert load_file(continued / "clusters.safetensors").keys() == load_file(tuned / "clusters.safetensors").keys()
    before = _weights(start_run)
    assert not all(torch.equal(before["hilora"][k], state) for k, state in _weights(tuned)["hilora"].items())


def test_a_tuned_run_is_an_ordinary_run(start_run, reward_head, tiny_world, tmp_path):
    """It records what made it, keeps the start's clusters and mapper when only HiLoRA is tuned, and
    generate, export and doctor take it."""
    from coemogen import CoEmoGenPipeline

    run = _tune(start_run, tiny_world, tmp_path / "tuned", reward_head, checkpointing_steps=1)
    record = json.loads((run / "config.json").read_text())["tuning"]
    assert record["starting_run"] == str(start_run.resolve())
    assert record["reward_shaping"] == "polarity" and record["anchor_weight"] == 1.0 and record["kl_weight"] == 0.0
    assert record["max_train_steps"] == 2 and record["tuned"] == ["hilora"] and str(reward_head) in record["reward"]
    assert json.loads((run / "tuning.json").read_text()) == record
    start, tuned = _weights(start_run), _weights(run)
    assert all(torch.equal(start["mapper"][k], v) for k, v in tuned["mapper"].items())
    assert not all(torch.equal(start["hilora"][k], v) for k, v in tuned["hilora"].items())
    start_clusters, clusters = load_file(start_run / "clusters.safetensors"), load_file(run / "clusters.safetensors")
    assert all(torch.equal(start_clusters[k], v) for k, v in clusters.items())
    assert (run / "checkpoint-2").is_dir()

    images = CoEmoGenPipeline.from_pretrained(run, device="cpu")("awe", num_images=1, num_inference_steps=2).images
    assert images[0].size == (32, 32)
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "export"), "--emotions", "awe"]) == 0
    assert any((tmp_path / "export").rglob("*.safetensors"))
    assert main(["doctor", "--model", str(run), "--out", str(tmp_path)]) == 0


def test_the_drift_penalty_is_zero_at_the_start_and_grows_as_the_run_moves(
    start_run, reward_head, tiny_world, tmp_path
):
    args = _args(tiny_world, tmp_path / "t", method="tune", init_from=str(start_run), max_train_steps=1)
    run, _ = build(args, MIKELS, make_accelerator(args), reward_model=str(reward_head), anchor_weight=0.0,
                   kl_weight=1.0, num_inference_steps=3)  # fmt: skip
    from coemogen.training.data import collate

    batch = collate([run.dataset[i] for i in range(4)])
    with run.select_adapters(batch):
        first = run.module(batch, torch.Generator().manual_seed(0))
    assert first["l_kl"].item() == 0.0
    with torch.no_grad():
        for p in run.params.values():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    with run.select_adapters(batch):
        moved = run.module(batch, torch.Generator().manual_seed(0))
    assert moved["l_kl"].item() > 0


def test_emogen_tunes_its_mapper_and_keeps_its_encoder(tiny_models, tiny_world, reward_head, tmp_path):
    start = train(
        _args(tiny_world, tmp_path / "emogen", max_train_steps=2, method="emogen", **_sources(tiny_models)),
        emotion_dim=16, mapper_width=24, encoder_epochs=1, encoder_batch_size=8,
    )  # fmt: skip
    run = _tune(start, tiny_world, tmp_path / "tuned", reward_head)
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "emogen" and config["tuning"]["tuned"] == ["mapper"]
    before, after = load_file(start / "mapper.safetensors"), load_file(run / "mapper.safetensors")
    assert not all(torch.equal(before[k], v) for k, v in after.items())
    encoder = load_file(start / "emotion_encoder.safetensors")
    assert all(torch.equal(encoder[k], v) for k, v in load_file(run / "emotion_encoder.safetensors").items())


def test_sdxl_run_tunes_with_a_quality_term(tiny_sdxl_models, tiny_world, reward_head, tmp_path):
    start = train(
        _args(tiny_world, tmp_path / "sdxl", max_train_steps=1, pretrained_model_name_or_path=str(tiny_sdxl_models[0]),
              clip_model_name_or_path=str(tiny_sdxl_models[1])),
        mapper_hidden_dim=32,
    )  # fmt: skip
    head = tmp_path / "head"
    train_emotion_head(tiny_world, head, tiny_sdxl_models[1], MIKELS, steps=5)
    run = _tune(start, tiny_world, tmp_path / "tuned", head, max_train_steps=1, quality_model=str(tiny_sdxl_models[1]),
                report_to="tensorboard")  # fmt: skip
    assert json.loads((run / "config.json").read_text())["tuning"]["quality_model"] == str(tiny_sdxl_models[1])
    assert any((run / "logs").rglob("events.out.tfevents.*"))


def test_bad_settings_are_refused_with_clear_messages(start_run, tiny_world, tmp_path, capsys):
    manifest = str(tiny_world / "manifest.jsonl")
    with pytest.raises(CoEmoGenError, match="--truncation_steps must be between 1 and --num_inference_steps"):
        tune(manifest, tmp_path / "a", start_run, truncation_steps=5, num_inference_steps=3)
    with pytest.raises(CoEmoGenError, match="every loss of tuning is switched off"):
        tune(manifest, tmp_path / "b", start_run, reward_weight=0.0, anchor_weight=0.0, kl_weight=0.0)
    with pytest.raises(CoEmoGenError, match="no emotion reward is registered"):  # tiny models: no registered head
        tune(manifest, tmp_path / "c", start_run, max_train_steps=1)
    with pytest.raises(CoEmoGenError, match="tune has no option lora_rank"):
        tune(manifest, tmp_path / "d", start_run, lora_rank=8)
    assert main(["tune", "--manifest", manifest, "--out", str(tmp_path / "e"), "--reward_shaping", "valence"]) != 0
    assert "--reward_shaping must be one of polarity, target" in capsys.readouterr().err
