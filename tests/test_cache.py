"""The feature cache: what it holds, resuming, training from it, and refusing a stale one."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from coemogen.cli import main
from coemogen.errors import CoEmoGenError
from coemogen.training.cache import FeatureCache
from coemogen.training.config import TrainingArguments
from coemogen.training.loop import train


def _cache(tiny_models, world, out, *flags):
    argv = ["cache", "--manifest", str(world / "manifest.jsonl"), "--out", str(out), "--shard_size", "12"]
    argv += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    assert main([*argv, *flags]) == 0
    return out


@pytest.fixture(scope="module")
def full_cache(tiny_models, tiny_world, tmp_path_factory):
    """Latents (and their mirror images) + caption embeddings + image tokens of the tiny world."""
    return _cache(
        tiny_models, tiny_world, tmp_path_factory.mktemp("cache") / "c", "--random_flip", "--cache_image_tokens"
    )


def _args(tiny_models, world, out, **kw):
    values = dict(
        manifest=str(world / "manifest.jsonl"),
        out=str(out),
        pretrained_model_name_or_path=str(tiny_models[0]),
        clip_model_name_or_path=str(tiny_models[1]),
        max_train_steps=3,
        train_batch_size=4,
        checkpointing_steps=0,
        report_to="none",
        validation_steps=0,
        center_crop=True,
    )
    return TrainingArguments(**{**values, **kw})


def test_cache_holds_every_feature_per_record(full_cache, tiny_world):
    cache = FeatureCache(full_cache)
    records = cache.records()
    assert len(records) == cache.num_rows == 32 and cache.num_shards == 3  # 8 emotions x 4 images, shards of 12
    row = cache.row(13)
    assert row["latent_mean"].shape == row["flipped_latent_mean"].shape == (4, 16, 16)
    assert (row["latent_std"] > 0).all()
    assert row["image_tokens"].dtype == torch.float16 and row["image_tokens"].shape == (17, 32)  # CLS + 4x4 patches
    assert not torch.equal(row["latent_mean"], row["flipped_latent_mean"])
    assert row["caption_embeds"].shape == (32,)
    assert records[13]["caption"] in (tiny_world / "manifest.jsonl").read_text()


def test_killed_cache_rerun_gives_the_same_bytes(full_cache, tiny_models, tiny_world, tmp_path):
    partial = tmp_path / "c"
    shutil.copytree(full_cache, partial)
    (partial / "shard-00001.safetensors").unlink()  # as if killed while writing shard 1
    with pytest.raises(CoEmoGenError, match="incomplete"):
        FeatureCache(partial)
    _cache(tiny_models, tiny_world, partial, "--random_flip", "--cache_image_tokens")
    for f in sorted(full_cache.iterdir()):
        assert (partial / f.name).read_bytes() == f.read_bytes(), f.name


def test_cache_with_other_settings_in_the_same_folder_is_refused(full_cache, tiny_models, tiny_world):
    from coemogen.cli.parser import build_parser
    from coemogen.training.cache import run_cache_command

    before = {f.name: f.read_bytes() for f in full_cache.iterdir()}
    argv = ["cache", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(full_cache)]
    argv += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    with pytest.raises(CoEmoGenError, match="already holds a different cache.*random_flip"):
        run_cache_command(build_parser().parse_args(argv))  # no --random_flip: another fingerprint
    assert {f.name: f.read_bytes() for f in full_cache.iterdir()} == before


def test_training_from_the_cache_matches_training_from_images(full_cache, tiny_models, tiny_world, tmp_path):
    # A cache with image tokens: CLIP is released, every frozen feature comes from the cache.
    cached = train(_args(tiny_models, tiny_world, tmp_path / "cached", cache=str(full_cache)), mapper_hidden_dim=32)
    direct = train(_args(tiny_models, tiny_world, tmp_path / "direct"), mapper_hidden_dim=32)
    for name in ("hilora", "mapper", "perception_encoder"):
        a, b = load_file(cached / f"{name}.safetensors"), load_file(direct / f"{name}.safetensors")
        changed = False
        for k in a:
            # image tokens are cached in half precision and VAE batches differ: close, not bitwise
            torch.testing.assert_close(a[k], b[k], rtol=2e-3, atol=2e-4)
            changed |= not torch.equal(a[k], torch.zeros_like(a[k]))
        assert changed


def test_flip_augmentation_from_the_cache_matches_flipped_images(full_cache, tiny_models, tiny_world, tmp_path):
    cached = _args(tiny_models, tiny_world, tmp_path / "cached", cache=str(full_cache), random_flip=True)
    direct = _args(tiny_models, tiny_world, tmp_path / "direct", random_flip=True)
    a = load_file(train(cached, mapper_hidden_dim=32) / "hilora.safetensors")
    b = load_file(train(direct, mapper_hidden_dim=32) / "hilora.safetensors")
    unflipped = load_file(
        train(_args(tiny_models, tiny_world, tmp_path / "plain"), mapper_hidden_dim=32) / "hilora.safetensors"
    )
    key = next(k for k in a if k.endswith("lora_B"))
    torch.testing.assert_close(a[key], b[key], rtol=2e-3, atol=2e-4)
    assert not torch.allclose(a[key], unflipped[key], rtol=2e-3, atol=2e-4)


def test_cache_without_image_tokens_computes_them_on_the_fly(tiny_models, tiny_world, tmp_path):
    cache = _cache(tiny_models, tiny_world, tmp_path / "c")
    assert "image_tokens" not in FeatureCache(cache).features
    run = train(_args(tiny_models, tiny_world, tmp_path / "run", cache=str(cache)), mapper_hidden_dim=32)
    assert (run / "perception_encoder.safetensors").is_file()


@pytest.mark.parametrize(
    "change, part",
    [
        (dict(resolution=16), "resolution"),
        (dict(random_flip=True), "random_flip"),
        (dict(clip_model_name_or_path="OTHER"), "clip_model_name_or_path"),
        ("manifest", "manifest_records"),
    ],
)
def test_stale_or_foreign_cache_is_refused_naming_the_part(full_cache, tiny_models, tiny_world, tmp_path, change, part):
    no_flip = _cache(tiny_models, tiny_world, tmp_path / "noflip", "--cache_image_tokens")
    kw = {}
    if change == "manifest":
        lines = (tiny_world / "manifest.jsonl").read_text().splitlines()
        edited = json.loads(lines[0]) | {"caption": "an edited caption"}
        manifest = tmp_path / "manifest.jsonl"
        manifest.write_text("\n".join([json.dumps(edited), *lines[1:]]) + "\n")
        kw["manifest"] = str(manifest)
    else:
        kw = change
    if "clip_model_name_or_path" in kw:  # the same CLIP under another name: still refused (another source)
        other = tmp_path / "OTHER"
        shutil.copytree(tiny_models[1], other)
        kw = {"clip_model_name_or_path": str(other)}
    args = _args(tiny_models, tiny_world, tmp_path / "run", cache=str(no_flip), **kw)
    with pytest.raises(CoEmoGenError, match=rf"(?s){part}.*Rebuild it: coemogen cache"):
        train(args, mapper_hidden_dim=32)


def test_cache_needs_centre_crops(full_cache, tiny_models, tiny_world, tmp_path):
    with pytest.raises(CoEmoGenError, match="--center_crop"):
        train(_args(tiny_models, tiny_world, tmp_path / "run", cache=str(full_cache), center_crop=False))


def test_a_cache_with_image_tokens_loads_no_clip_tower(full_cache, tiny_models, tiny_world, tmp_path):
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.loop import build, make_accelerator

    args = _args(tiny_models, tiny_world, tmp_path / "run", cache=str(full_cache))
    parts, _ = build(args, Taxonomy.default(), make_accelerator(args))
    assert parts.base.clip is None and parts.base.text_projection.weight.shape == (32, 32)
    args = _args(tiny_models, tiny_world, tmp_path / "run2")
    without, _ = build(args, Taxonomy.default(), make_accelerator(args))
    assert torch.equal(parts.base.text_projection.weight, without.base.clip.text_projection.weight)
