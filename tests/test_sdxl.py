"""CoEmoGen on SDXL through the base-model seam (`models/families/`): the family read from the base
model's own config, e^v reaching both text encoders, SDXL's micro-conditions, every command on a tiny
random SDXL, and the exported files reproducing `coemogen generate` in plain diffusers'
StableDiffusionXLPipeline."""

import json
import threading
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from coemogen.cli import main
from coemogen.errors import CoEmoGenError
from coemogen.models.base import load_base_models
from coemogen.models.conditioning import EmotionConditioner
from coemogen.models.families import ModelFamily, TextEncoderSpec, family_for, register_family
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline

pytestmark = pytest.mark.usefixtures("single_torch_thread")
STEPS = 6


def sources(models) -> list[str]:
    return ["--pretrained_model_name_or_path", str(models[0]), "--clip_model_name_or_path", str(models[1])]


@pytest.fixture(scope="module")
def sdxl_run(tiny_sdxl_models, tiny_world, tmp_path_factory):
    """A few steps of CoEmoGen on the tiny SDXL (a high learning rate, so that the emotions differ)."""
    out = tmp_path_factory.mktemp("sdxl") / "run"
    argv = ["train", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(out), *sources(tiny_sdxl_models)]
    argv += ["--max_train_steps", "4", "--train_batch_size", "4", "--learning_rate", "2e-2", "--random_flip"]
    argv += ["--checkpointing_steps", "2", "--validation_steps", "0", "--report_to", "none"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def sdxl_pipeline(sdxl_run):
    return CoEmoGenPipeline.from_pretrained(sdxl_run, device="cpu")


def _pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_the_family_comes_from_the_model_index(tiny_models, tiny_sdxl_models):
    sd = load_base_models(str(tiny_models[0]), str(tiny_models[1]), load_clip=False)
    xl = load_base_models(str(tiny_sdxl_models[0]), str(tiny_sdxl_models[1]), load_clip=False)
    assert (sd.family.name, sd.embed_dim, len(sd.text_encoders), sd.vae_in_fp32) == ("sd", 32, 1, False)
    assert (xl.family.name, xl.embed_dim, len(xl.text_encoders), xl.vae_in_fp32) == ("sdxl", 80, 2, True)
    assert (xl.vae_scale_factor, xl.default_resolution) == (2, 32)
    with pytest.raises(CoEmoGenError, match="KandinskyPipeline; CoEmoGen builds on sd .*sdxl"):
        family_for({"_class_name": "KandinskyPipeline"})


def test_a_family_missing_a_part_is_refused_by_name():
    class NoCondition(ModelFamily):
        name = "half"
        description = "a family without its text condition"
        pipeline_class_names = ("HalfPipeline",)
        text_encoders: ClassVar = (TextEncoderSpec("text_encoder", "tokenizer", "CLIPTextModel", "emb_params"),)
        lora_targets = ("to_q",)

        def unet_kwargs(self, condition, time_ids):
            return {}

    with pytest.raises(CoEmoGenError, match="NoCondition does not define .*diffusers_pipeline_class.*text_condition"):
        register_family(NoCondition)

    class NoEncoders(ModelFamily):
        name = "none"
        description = "no text encoders named"
        pipeline_class_names = ("NonePipeline",)
        lora_targets = ("to_q",)
        text_condition = unet_kwargs = kohya_module_name = kohya_metadata = diffusers_pipeline_class = print

    with pytest.raises(CoEmoGenError, match="NoEncoders does not define text_encoders"):
        register_family(NoEncoders)


def test_visual_embedding_enters_each_text_encoder_as_its_own_part(tiny_sdxl_models):
    """e^v made of a word's token embedding in each encoder (32 + 48 wide) gives exactly that word's
    condition: hidden states of both encoders' penultimate layers, pooled outputs, text embeddings."""
    base = load_base_models(str(tiny_sdxl_models[0]), str(tiny_sdxl_models[1]), load_clip=False)
    conditioner = EmotionConditioner(base)
    (token,) = base.tokenizer("balloon", add_special_tokens=False).input_ids
    parts = [encoder.get_input_embeddings().weight[token] for encoder in base.text_encoders]
    with torch.no_grad():
        injected = conditioner.encode_embeddings(torch.cat(parts)[None])
        word = conditioner.encode_text(["balloon"])
        swapped = conditioner.encode_embeddings(torch.cat([parts[0], parts[1].flip(0)])[None])
    assert injected.hidden_states.shape == (1, 77, 80) and injected.text_embeds.shape == (1, 40)
    for name in ("hidden_states", "pooled", "text_embeds"):
        torch.testing.assert_close(getattr(injected, name), getattr(word, name))
    assert not torch.allclose(swapped.text_embeds, word.text_embeds)  # the second encoder reads the second part
    torch.testing.assert_close(swapped.pooled, word.pooled)  # and the first encoder only the first
    with pytest.raises(CoEmoGenError, match="80"):
        conditioner.encode_embeddings(torch.zeros(1, 32))


def test_micro_conditions_follow_each_images_size_crop_and_flip(tiny_sdxl_models, tmp_path):
    from coemogen.data.manifest import ManifestRecord
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.data import ManifestDataset, collate
    from coemogen.training.loop import frozen_latents

    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(wide)  # resized to 48 x 32: the crop moves along x
    Image.new("RGB", (40, 80), (30, 30, 200)).save(tall)  # resized to 32 x 64: along y
    records = [ManifestRecord(wide, "awe", "a"), ManifestRecord(tall, "fear", "b")]
    dataset = ManifestDataset(records, Taxonomy.default(), 32, center_crop=False, seed=0, micro_conditioning=True)
    items = [dataset[(0, 5)], dataset[(1, 6)]]
    (x0, _), (_, y1) = dataset.crop(5), dataset.crop(6)
    assert items[0]["original_size"].tolist() == [64, 96] and items[1]["original_size"].tolist() == [80, 40]
    assert items[0]["crop_top_left"].tolist() == [0, round(16 * x0)]
    assert items[0]["flipped_crop_top_left"].tolist() == [0, 16 - round(16 * x0)]
    assert items[1]["crop_top_left"].tolist() == items[1]["flipped_crop_top_left"].tolist() == [round(32 * y1), 0]

    base = load_base_models(str(tiny_sdxl_models[0]), str(tiny_sdxl_models[1]))
    for seed in range(8):  # some draw flips the wide image, some do not
        flips = torch.rand(2, generator=torch.Generator().manual_seed(seed)) < 0.5
        _, _, features = frozen_latents(base, collate(items), torch.Generator().manual_seed(seed), True)
        left = items[0]["flipped_crop_top_left" if flips[0] else "crop_top_left"][1]
        assert features["time_ids"][0].tolist() == [64, 96, 0, left, 32, 32]
        assert features["time_ids"][1].tolist() == [80, 40, round(32 * y1), 0, 32, 32]


def test_mixed_precision_keeps_the_sdxl_vae_in_fp32(tiny_sdxl_models, tiny_world, tmp_path):
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.config import TrainingArguments
    from coemogen.training.loop import build, make_accelerator

    args = TrainingArguments(
        manifest=str(tiny_world / "manifest.jsonl"), out=str(tmp_path),
        pretrained_model_name_or_path=str(tiny_sdxl_models[0]),
        clip_model_name_or_path=str(tiny_sdxl_models[1]), mixed_precision="bf16", report_to="none",
    )  # fmt: skip
    run, _ = build(args, Taxonomy.default(), make_accelerator(args))
    assert run.base.vae.dtype == torch.float32
    assert {e.dtype for e in run.base.text_encoders} == {torch.bfloat16}
    assert run.base.unet.conv_in.weight.dtype == torch.bfloat16
    assert run.model.config.embed_dim == 80 and run.model.config.resolution == 32


def test_exports_load_into_plain_diffusers_sdxl_and_reproduce_generate(sdxl_run, sdxl_pipeline, tiny_sdxl_models,
                                                                       tmp_path):  # fmt: skip
    """kohya LoRA (SGM names) + the embedding loaded into both text encoders, and the peft LoRA, in
    StableDiffusionXLPipeline at the same seed and settings, give `coemogen generate`'s image."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline

    from coemogen.export import export_run

    specs = ["awe", "fear:0.7,sadness:0.3"]
    items = export_run(tmp_path / "export", sdxl_run, emotions=specs, num_embeddings=2, pipeline=sdxl_pipeline)
    awe = items[0]
    state = load_file(awe.directory / "awe.safetensors")
    stems = {k.rsplit(".", 2)[0] for k in state}
    assert stems and all(s.startswith(("lora_unet_input_blocks_", "lora_unet_output_blocks_",
                                       "lora_unet_middle_block_1_")) for s in stems)  # fmt: skip
    assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k" in stems  # down block 1, layer 0, 2nd block
    with safe_open(awe.directory / "awe.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    a1111 = load_file(awe.directory / "embeddings" / "awe_mean.safetensors")
    assert {k: tuple(v.shape) for k, v in a1111.items()} == {"clip_l": (1, 32), "clip_g": (1, 48)}
    usage = (awe.directory / "USAGE.md").read_text()
    assert (
        "StableDiffusionXLPipeline" in usage and "text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2" in usage
    )

    plain = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_models[0]))
    plain.scheduler = DPMSolverMultistepScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    seed, differences, ours = 1, {}, {}

    def theirs(item, token, **lora):
        plain.load_lora_weights(str(item.directory), adapter_name="emotion", **lora)
        encoders = [("learned_embeds", plain.text_encoder, plain.tokenizer)]
        encoders.append(("learned_embeds_2", plain.text_encoder_2, plain.tokenizer_2))
        for folder, encoder, tokenizer in encoders:
            path = str(item.directory / folder / f"{token}.safetensors")
            plain.load_textual_inversion(path, token=token, text_encoder=encoder, tokenizer=tokenizer)
        prompt = sdxl_pipeline.model.config.template.replace("{}", token)
        try:
            generator = torch.Generator().manual_seed(seed)
            return plain(prompt, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator).images[0]
        finally:
            plain.delete_adapters("emotion")
            for _, encoder, tokenizer in encoders:
                plain.unload_textual_inversion(token, tokenizer, encoder)

    for item, spec in zip(items, specs):
        ours[spec] = _pixels(sdxl_pipeline(spec, num_images=1, seed=seed, num_inference_steps=STEPS).images)[0]
        token = f"{item.name}_seed{seed}"
        for form, lora in (("kohya", {"weight_name": f"{item.name}.safetensors"}), ("peft", {})):
            differences[spec, form] = int(np.abs(_pixels([theirs(item, token, **lora)])[0] - ours[spec]).max())
    print("largest pixel difference (0-255):", differences)
    assert max(differences.values()) <= 3, differences
    assert np.abs(ours[specs[0]] - ours[specs[1]]).max() > 10  # the emotions differ: the check can fail


def test_generate_every_emotion_a_mix_and_a_template_then_evaluate(sdxl_run, tiny_world, tmp_path):
    common = ["--model", str(sdxl_run), "--num-images", "2", "--steps", "3", "--seed", "4"]
    assert main(["generate", "--emotion", "all", "--out", str(tmp_path / "all"), *common]) == 0
    folders = sorted(p.name for p in (tmp_path / "all").iterdir() if p.is_dir())
    assert len(folders) == 8 and all(len(list((tmp_path / "all" / f).glob("*.png"))) >= 2 for f in folders)
    assert main(["generate", "--emotion", "fear:0.7,sadness:0.3", "--out", str(tmp_path / "mix"), *common]) == 0
    assert (
        main(["generate", "--emotion", "awe", "--template", "{} balloon", "--out", str(tmp_path / "t"), *common]) == 0
    )
    meta = json.loads(next((tmp_path / "t").glob("awe_0000.json")).read_text())
    assert meta["template"] == "{} balloon"
    img = Image.open(next((tmp_path / "mix").glob("*_0000.png")))
    assert img.size == (32, 32)

    report = tmp_path / "report"
    argv = ["evaluate", "--images", str(tmp_path / "all"), "--reference", str(tiny_world), "--out", str(report)]
    assert main([*argv, "--num-pairs", "4"]) == 0
    overall = json.loads((report / "metrics.json").read_text())["overall"]
    assert 0 <= overall["emo_a"] <= 1 and overall["fid"] > 0


def test_cache_train_from_it_analyze_and_doctor(sdxl_run, tiny_sdxl_models, tiny_world, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["cache", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(cache), *sources(tiny_sdxl_models)]
    assert main([*argv, "--cache_image_tokens", "--random_flip", "--shard_size", "16"]) == 0
    features = json.loads((cache / "cache.json").read_text())["features"]
    assert {"original_size", "crop_top_left", "flipped_crop_top_left", "flipped_image_tokens"} <= set(features)
    run = tmp_path / "cached-run"
    argv = ["train", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(run), *sources(tiny_sdxl_models)]
    argv += ["--cache", str(cache), "--center_crop", "--random_flip", "--max_train_steps", "2", "--train_batch_size"]
    assert main([*argv, "4", "--validation_steps", "0", "--report_to", "none"]) == 0
    assert (run / "clusters.safetensors").is_file()

    out = tmp_path / "timesteps"
    argv = ["analyze", "timesteps", "--model", str(sdxl_run), "--out", str(out), "--num-images", "1", "--steps", "2"]
    assert main([*argv, "--ks", "0", "2", "--levels", "all"]) == 0
    assert any(out.iterdir())

    capsys.readouterr()
    main(["doctor", "--model", str(sdxl_run), "--out", str(tmp_path)])
    assert "Stable Diffusion XL (sdxl)" in capsys.readouterr().out


def test_one_pipeline_serves_concurrent_sdxl_requests_in_one_pass(sdxl_pipeline):
    from coemogen.web.batching import RequestBatcher
    from coemogen.web.limits import GenerationRequest

    batcher = RequestBatcher(sdxl_pipeline, max_batch_images=8, gather_s=0.5)
    requests = [GenerationRequest("awe", None, 1, 3, 5.0, 0.4, 2), GenerationRequest("fear", None, 9, 3, 5.0, 0.4, 1)]
    outputs = [None, None]

    def call(k):
        outputs[k] = batcher.generate(requests[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.batches_made == 1
    for request, output in zip(requests, outputs):
        alone = sdxl_pipeline(**request.pipeline_kwargs(), merge_adapters=False)
        assert np.abs(_pixels(output.images) - _pixels(alone.images)).max() <= 2


def test_the_web_app_loads_an_sdxl_run_and_serves_a_request(sdxl_run):
    import zipfile

    from coemogen.web import CoEmoGenWebApp, WebLimits
    from coemogen.web.limits import GenerationRequest

    app = CoEmoGenWebApp.from_pretrained(sdxl_run, WebLimits(max_images=2, max_steps=3), device="cpu")
    output, archive = app.generate(GenerationRequest("fear:0.7,sadness:0.3", None, 0, 2, 5.0, 0.4, 2))
    assert [im.size for im in output.images] == [(32, 32)] * 2
    names = zipfile.ZipFile(archive).namelist()
    assert sum(name.endswith(".json") for name in names) == 2 and sum(name.endswith(".png") for name in names) == 3
