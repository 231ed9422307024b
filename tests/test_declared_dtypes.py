"""Base models whose files declare a half-precision dtype (as fp16-published checkpoints' configs
do) load at the dtype the package chooses: every component in float32, then the mixed-precision
rule casts the frozen parts (the SDXL VAE staying fp32). Train (fp32 and bf16 on the CPU), cache,
generate and export run on such bases, for both model families."""

import json
import shutil

import pytest
import torch

from coemogen.cli import main
from coemogen.models.base import load_base_models
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _declare(models, tmp_path, dtype: str):
    """A copy of (base, clip) whose every transformers config declares `dtype` and whose diffusers
    components' weights are stored in it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    base, clip = tmp_path / "base", tmp_path / "clip"
    shutil.copytree(models[0], base)
    shutil.copytree(models[1], clip)
    for config in [*base.glob("text_encoder*/config.json"), clip / "config.json"]:
        data = json.loads(config.read_text())
        data["dtype"] = data["torch_dtype"] = dtype
        config.write_text(json.dumps(data))
    for cls, sub in ((AutoencoderKL, "vae"), (UNet2DConditionModel, "unet")):
        cls.from_pretrained(base / sub).to(getattr(torch, dtype)).save_pretrained(base / sub)
    return base, clip


@pytest.fixture(scope="module", params=["float16", "bfloat16"])
def declared_sdxl(request, tiny_sdxl_models, tmp_path_factory):
    return request.param, _declare(tiny_sdxl_models, tmp_path_factory.mktemp(f"sdxl-{request.param}"), request.param)


@pytest.fixture(scope="module")
def declared_sd(tiny_models, tmp_path_factory):
    return _declare(tiny_models, tmp_path_factory.mktemp("sd-float16"), "float16")


def test_every_component_loads_in_float32_whatever_its_files_declare(declared_sdxl, declared_sd):
    for base, clip in (declared_sdxl[1], declared_sd):
        models = load_base_models(str(base), str(clip), pretrained_vae_model_name_or_path=str(base / "vae"))
        for module in [models.vae, models.unet, *models.text_encoders, models.clip]:
            assert {p.dtype for p in module.parameters()} == {torch.float32}, type(module).__name__
        cast = load_base_models(str(base), str(clip), dtype=torch.bfloat16)
        assert {p.dtype for p in cast.text_encoders[0].parameters()} == {torch.bfloat16}
        assert cast.vae.dtype == (torch.float32 if cast.vae_in_fp32 else torch.bfloat16)


def _train(base, clip, world, out, precision: str, extra=()):
    argv = ["train", "--manifest", str(world / "manifest.jsonl"), "--out", str(out)]
    argv += ["--pretrained_model_name_or_path", str(base), "--clip_model_name_or_path", str(clip)]
    argv += ["--max_train_steps", "2", "--train_batch_size", "4", "--mixed_precision", precision]
    return main([*argv, "--validation_steps", "0", "--report_to", "none", *extra])


def test_sdxl_declared_half_trains_in_fp32_and_bf16_caches_generates_and_exports(declared_sdxl, tiny_world, tmp_path):
    dtype, (base, clip) = declared_sdxl
    assert _train(base, clip, tiny_world, tmp_path / "fp32", "no") == 0
    assert _train(base, clip, tiny_world, tmp_path / "bf16", "bf16") == 0
    cache = tmp_path / "cache"
    argv = ["cache", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(cache)]
    argv += ["--pretrained_model_name_or_path", str(base), "--clip_model_name_or_path", str(clip)]
    assert main(argv) == 0 and (cache / "cache.json").is_file()
    out = tmp_path / "images"
    assert main(["generate", "--model", str(tmp_path / "bf16"), "--emotion", "awe", "--num-images", "2", "--steps",
                 "2", "--out", str(out)]) == 0  # fmt: skip
    assert len(list(out.glob("awe_*.png"))) == 2
    assert main(["export", "--model", str(tmp_path / "fp32"), "--out", str(tmp_path / "export")]) == 0
    assert any((tmp_path / "export").rglob("*.safetensors"))
    pipe = CoEmoGenPipeline.from_pretrained(tmp_path / "fp32", device="cpu")
    assert {p.dtype for p in pipe.base.text_encoders[0].parameters()} == {torch.float32}


def test_sd_declared_float16_trains_with_bf16_on_the_cpu_and_generates(declared_sd, tiny_world, tmp_path):
    base, clip = declared_sd
    assert _train(base, clip, tiny_world, tmp_path / "run", "bf16") == 0
    out = tmp_path / "images"
    assert main(["generate", "--model", str(tmp_path / "run"), "--emotion", "fear", "--num-images", "1", "--steps",
                 "2", "--out", str(out)]) == 0  # fmt: skip
    assert len(list(out.glob("fear_*.png"))) == 1
