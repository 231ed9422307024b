"""Generation at evaluation scale: every emotion, in batches, resumable after a kill."""

import subprocess

from coemogen.cli import main
from coemogen.pipelines.folders import completed_indices, generate_to_folders

FAST = dict(num_inference_steps=3)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_[0-9]*.*"))}


def test_resumed_set_equals_the_uninterrupted_one(shipped_pipeline, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert generate_to_folders(shipped_pipeline, [("fear", whole)], 5, seed=3, batch_size=2, **FAST) == 5
    # A killed run: images 0, 1 and 3 complete; image 2 written without its metadata; 4 never made.
    generate_to_folders(shipped_pipeline, [("fear", resumed)], 2, seed=3, batch_size=2, **FAST)
    for name, data in _bytes(whole).items():
        if name.endswith("_0003.png") or name.endswith("_0003.json") or name.endswith("_0002.png"):
            (resumed / name).write_bytes(data)
    dead = subprocess.Popen(["true"])
    dead.wait()  # the killed writer's temporary file, named after its (now dead) process
    (resumed / f"fear_0004.png.tmp-{dead.pid}").write_bytes(b"\x89PNG truncated")
    assert sorted(completed_indices(resumed)) == [0, 1, 3]
    assert generate_to_folders(shipped_pipeline, [("fear", resumed)], 5, seed=3, batch_size=2, **FAST) == 2
    assert _bytes(resumed) == _bytes(whole)
    assert generate_to_folders(shipped_pipeline, [("fear", resumed)], 5, seed=3, batch_size=2, **FAST) == 0


def test_all_emotions_one_folder_each_matching_single_emotion_runs(tmp_path, capsys):
    common = ["--num-images", "2", "--steps", "2", "--seed", "5", "--batch-size", "3"]
    assert main(["generate", "--emotion", "all", "--out", str(tmp_path / "all"), *common]) == 0
    assert "wrote 16 images (0 already there)" in capsys.readouterr().out
    folders = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert len(folders) == 8 and "awe" in folders
    assert all(sorted(completed_indices(tmp_path / "all" / f)) == [0, 1] for f in folders)
    assert main(["generate", "--emotion", "sadness", "--out", str(tmp_path / "one"), *common]) == 0
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "all" / "sadness")


def test_the_pipeline_takes_latents_output_types_a_step_callback_and_its_scheduler_component(shipped_pipeline):
    import numpy as np
    import pytest
    import torch
    from diffusers import EulerDiscreteScheduler

    from coemogen.errors import CoEmoGenError

    pipe = shipped_pipeline
    common = dict(num_images=2, seed=3, num_inference_steps=3)
    pil = pipe("awe", **common)
    latents = pipe("awe", output_type="latent", **common).images
    assert latents.dim() == 4 and latents.shape[:2] == (2, pipe.base.unet.config.in_channels)
    # the seeded noise given back as `latents` makes the same images
    noise = pipe.prepare_latents([torch.Generator().manual_seed(3 + i) for i in range(2)], torch.float32)
    again = pipe("awe", latents=noise, **common)
    assert [np.asarray(a).tolist() for a in again.images] == [np.asarray(b).tolist() for b in pil.images]
    as_np = pipe("awe", output_type="np", **common).images
    as_pt = pipe("awe", output_type="pt", **common).images
    assert as_np.shape[0] == 2 and as_np.shape[-1] == 3 and 0 <= as_np.min() and as_np.max() <= 1
    np.testing.assert_allclose(as_pt.permute(0, 2, 3, 1).numpy(), as_np)
    assert np.abs(np.round(as_np * 255) - np.stack([np.asarray(im) for im in pil.images])).max() <= 1
    # a callback sees every step, and what it returns replaces the latents
    seen = []

    def zero_at_the_end(pipeline, step, timestep, kwargs):
        seen.append(step)
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 2 else None

    flat = pipe("awe", output_type="latent", callback_on_step_end=zero_at_the_end, **common).images
    assert seen == [0, 1, 2] and torch.count_nonzero(flat) == 0
    # the scheduler is a component: replacing it changes the sampler, and the metadata names it
    default = pipe.scheduler
    try:
        pipe.scheduler = EulerDiscreteScheduler.from_config(default.config)
        euler = pipe("awe", **common)
        assert euler.metadata[0]["scheduler"] == "euler"
        assert [np.asarray(a).tolist() for a in euler.images] != [np.asarray(b).tolist() for b in pil.images]
        assert [np.asarray(a).tolist() for a in pipe("awe", scheduler="dpm", **common).images] == [
            np.asarray(b).tolist() for b in pil.images
        ]
    finally:
        pipe.scheduler = default
    with pytest.raises(CoEmoGenError, match="output_type"):
        pipe("awe", output_type="jpeg", **common)
    with pytest.raises(CoEmoGenError, match="latents hold 1 images"):
        pipe("awe", latents=noise[:1], **common)


def test_height_and_width_set_the_image_size(shipped_pipeline, tmp_path):
    """diffusers' `height`/`width`: a non-square size below the model's 64 px, recorded in the
    metadata; the default is unchanged; a size the VAE cannot make is refused."""
    import json

    import numpy as np
    import pytest

    from coemogen.errors import CoEmoGenError

    pipe = shipped_pipeline
    common = dict(num_images=2, seed=3, num_inference_steps=3)
    wide = pipe("awe", height=32, width=96, **common)
    assert [im.size for im in wide.images] == [(96, 32)] * 2
    assert (wide.metadata[0]["height"], wide.metadata[0]["width"]) == (32, 96)
    default = pipe("awe", **common)
    same = pipe("awe", height=64, width=64, **common)
    assert [np.asarray(a).tolist() for a in same.images] == [np.asarray(b).tolist() for b in default.images]
    with pytest.raises(CoEmoGenError, match="not a multiple of the VAE's factor"):
        pipe("awe", height=30, **common)
    out = tmp_path / "wide"
    assert main(["generate", "--emotion", "fear", "--num-images", "1", "--steps", "2", "--height", "48",
                 "--out", str(out)]) == 0  # fmt: skip
    from PIL import Image

    assert Image.open(out / "fear_0000.png").size == (64, 48)
    assert json.loads((out / "fear_0000.json").read_text())["height"] == 48
