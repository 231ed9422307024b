"""`coemogen export`: the LoRA and embedding files of every emotion of the shipped run hold exactly
the run's condition, load into a plain diffusers StableDiffusionPipeline and reproduce
`coemogen generate`'s images; the model cards and the CLI."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from coemogen.errors import CoEmoGenError
from coemogen.export import export_run, push_to_hub
from coemogen.export.card import training_section
from coemogen.models.hilora import adapter_weights, hilora_layers
from coemogen.world.paths import POCKET_SD

pytestmark = pytest.mark.usefixtures("single_torch_thread")

MIXES = ["fear:0.7,sadness:0.3", "amusement:0.5,fear:0.5"]  # one group (rank 12), two groups (rank 16)
ROUND_TRIP_STEPS = 10  # the code path of the default steps (the README reports 25 steps, seeds 0-3)
NUM_EMBEDDINGS = 2


@pytest.fixture(scope="module")
def exported(shipped_pipeline, tmp_path_factory):
    """Every emotion of the shipped run and two mixes, exported once: {spec: ExportedEmotion}."""
    out = tmp_path_factory.mktemp("export")
    specs = [*shipped_pipeline.taxonomy.emotions, *MIXES]
    items = export_run(out, emotions=specs, num_embeddings=NUM_EMBEDDINGS, pipeline=shipped_pipeline)
    return {spec: item for spec, item in zip(specs, items)}


@pytest.fixture(scope="module")
def plain_sd():
    """A plain diffusers StableDiffusionPipeline on the pocket SD, with CoEmoGen's default scheduler."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(POCKET_SD), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def hilora_deltas(pipeline, spec):
    """{module: W' - W} with the spec's adapters merged the way generation merges them."""
    model, unet = pipeline.model, pipeline.base.unet
    gates = model.gates(pipeline.taxonomy.weights([spec]))
    layers = dict(hilora_layers(unet))
    before = {name: layer.base.weight.detach().clone() for name, layer in layers.items()}
    with adapter_weights(unet, gates, merge=True):
        return {name: layer.base.weight.detach() - before[name] for name, layer in layers.items()}


def kohya_deltas(path):
    """{diffusers module path: (alpha / rank) * up @ down} read back from a kohya file, and its ranks."""
    state = load_file(path)
    stems = {key.rsplit(".lora_down.weight", 1)[0] for key in state if key.endswith(".lora_down.weight")}
    assert set(state) == {f"{s}.{t}" for s in stems for t in ("lora_down.weight", "lora_up.weight", "alpha")}
    deltas, ranks = {}, set()
    for stem in stems:
        down, up, alpha = state[f"{stem}.lora_down.weight"], state[f"{stem}.lora_up.weight"], state[f"{stem}.alpha"]
        ranks.add(down.shape[0])
        deltas[stem] = (alpha / down.shape[0]) * up @ down
    return deltas, ranks


def test_kohya_lora_of_every_emotion_and_mix_is_the_runs_hilora_delta(shipped_pipeline, exported):
    expected_ranks = {**{e: 8 for e in shipped_pipeline.taxonomy.emotions}, MIXES[0]: 12, MIXES[1]: 16}
    for spec, item in exported.items():
        deltas, ranks = kohya_deltas(item.directory / f"{item.name}.safetensors")
        assert ranks == {expected_ranks[spec]}, spec
        merged = hilora_deltas(shipped_pipeline, spec)
        # pocket SD: 7 transformer blocks x 2 attentions x 4 projections
        assert len(merged) == 56 and set(deltas) == {"lora_unet_" + m.replace(".", "_") for m in merged}
        for module, delta in merged.items():
            torch.testing.assert_close(deltas["lora_unet_" + module.replace(".", "_")], delta, atol=2e-6, rtol=1e-5)

    awe = exported["awe"]
    state = load_file(awe.directory / "awe.safetensors")
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight" in state
    assert {float(v) for k, v in state.items() if k.endswith(".alpha")} == {8.0}
    with safe_open(awe.directory / "awe.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
    assert (meta["ss_network_dim"], float(meta["ss_network_alpha"])) == ("8", 8.0)
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.resolution"] == "64x64" and meta["modelspec.title"] == "CoEmoGen awe"
    assert len(meta["modelspec.date"]) == 10 and json.loads(meta["coemogen.adapters"]) == {"awe": 1.0, "positive": 1.0}


def test_peft_lora_loads_into_diffusers_as_the_same_delta(shipped_pipeline, exported, plain_sd):
    for spec in ("sadness", MIXES[0]):
        item = exported[spec]
        with safe_open(item.directory / "pytorch_lora_weights.safetensors", "pt") as f:
            assert all(k.startswith("unet.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in f.keys())
            assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.r"] == item.rank
        plain_sd.load_lora_weights(str(item.directory), adapter_name="peft")  # the default weight name
        try:
            for module, delta in hilora_deltas(shipped_pipeline, spec).items():
                layer = plain_sd.unet.get_submodule(module)
                loaded = layer.scaling["peft"] * layer.lora_B["peft"].weight @ layer.lora_A["peft"].weight
                torch.testing.assert_close(loaded, delta, atol=2e-6, rtol=1e-5)
        finally:
            plain_sd.delete_adapters("peft")


def test_embeddings_in_both_forms_are_the_cluster_mean_and_samples(shipped_pipeline, exported):
    clusters, taxonomy = shipped_pipeline.clusters, shipped_pipeline.taxonomy
    awe = exported["awe"]
    assert (awe.mean_token, awe.sample_tokens) == ("awe_mean", ["awe_seed0", "awe_seed1"])
    vectors = {}
    for token in [awe.mean_token, *awe.sample_tokens]:
        a1111 = load_file(awe.directory / "embeddings" / f"{token}.safetensors")
        diffusers = load_file(awe.directory / "learned_embeds" / f"{token}.safetensors")
        assert list(a1111) == ["emb_params"] and list(diffusers) == [token]
        assert a1111["emb_params"].shape == (1, 128) and torch.equal(a1111["emb_params"], diffusers[token])
        vectors[token] = a1111["emb_params"][0]
    index = taxonomy.index("awe")
    torch.testing.assert_close(vectors["awe_mean"], clusters.means[index, 0])  # one Gaussian per emotion
    std = clusters.variances[index, 0].sqrt()
    for token in awe.sample_tokens:  # samples spread at the run's temperature (0.4) around the mean
        z = (vectors[token] - vectors["awe_mean"]) / std
        assert 0.3 < float(z.std()) < 0.5
    assert not torch.equal(vectors["awe_seed0"], vectors["awe_seed1"])

    mixed = exported[MIXES[0]]
    mean = load_file(mixed.directory / "embeddings" / f"{mixed.mean_token}.safetensors")["emb_params"][0]
    fear, sadness = clusters.means[taxonomy.index("fear"), 0], clusters.means[taxonomy.index("sadness"), 0]
    torch.testing.assert_close(mean, 0.7 * fear + 0.3 * sadness)
    assert mixed.name == "fear70_sadness30" and mixed.spec == "fear:0.7,sadness:0.3"


def test_plain_diffusers_with_the_exported_files_reproduces_coemogen_generate(shipped_pipeline, exported, plain_sd):
    """For every emotion (and a mix): kohya LoRA via load_lora_weights and the seed-k embedding via
    load_textual_inversion, prompted with the run's template, at seed k, give generate's image."""
    seed = 1  # the embedding `<name>_seed1` is the one `generate --seed 1` samples for its first image
    differences = {}
    for spec in [*shipped_pipeline.taxonomy.emotions, MIXES[0]]:
        item = exported[spec]
        ours = shipped_pipeline(spec, num_images=1, seed=seed, num_inference_steps=ROUND_TRIP_STEPS).images[0]
        token = f"{item.name}_seed{seed}"
        plain_sd.load_lora_weights(str(item.directory), weight_name=f"{item.name}.safetensors", adapter_name="emotion")
        plain_sd.load_textual_inversion(str(item.directory / "learned_embeds" / f"{token}.safetensors"))
        try:
            theirs = plain_sd(
                shipped_pipeline.model.config.template.replace("{}", token),
                num_inference_steps=ROUND_TRIP_STEPS,
                guidance_scale=5.0,
                generator=torch.Generator().manual_seed(seed),
            ).images[0]
        finally:
            plain_sd.delete_adapters("emotion")
        differences[spec] = int(np.abs(np.asarray(ours, np.int16) - np.asarray(theirs, np.int16)).max())
    print("largest pixel difference per emotion (0-255):", differences)
    assert max(differences.values()) <= 3, differences


def test_model_cards_and_usage(exported):
    from huggingface_hub import ModelCard

    awe = exported["awe"]
    card = ModelCard.load(awe.directory / "README.md")
    assert card.data.base_model == "coemogen:pocket-sd" and card.data.license == "apache-2.0"
    assert {"lora", "text-to-image", "stable-diffusion", "diffusers"} <= set(card.data.tags)
    assert card.data.instance_prompt == "awe_mean"
    for text in ("awe (positive)", "rank-8 LoRA", "temperature 0.4", "2,551 of 3,184 pairs kept", "Emo-A 0.904"):
        assert text in card.text, text
    usage = (awe.directory / "USAGE.md").read_text()
    assert "<lora:awe:1> awe_mean" in usage and "embedding:awe_mean" in usage
    assert 'pipe.load_lora_weights("awe", weight_name="awe.safetensors")' in usage
    assert 'pipe.load_textual_inversion("awe/learned_embeds/awe_mean.safetensors")' in usage

    root = ModelCard.load(awe.directory.parent / "README.md")
    assert "lora" in root.data.tags
    assert "[fear70_sadness30/](fear70_sadness30/README.md)" in root.text and "| 16 " in root.text


def test_training_section_reads_the_run_records(shipped_pipeline, tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()
    args = {"max_train_steps": 2000, "train_batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 1e-3}
    args |= {"weight_decay": 0.01, "lambda_sem": 1.0, "mixed_precision": "bf16", "seed": 0}
    (run / "training_args.json").write_text(json.dumps({**args, "manifest": str(data / "manifest.jsonl")}))
    (run / "data_summary.json").write_text(json.dumps({"records": 16, "per_emotion": {"awe": 10, "fear": 6}}))
    (data / "manifest.jsonl").write_text(json.dumps({"image": "a.png", "captioner": "hf:Qwen2.5-VL"}) + "\n")
    (data / "manifest.summary.json").write_text(json.dumps({"drop": 0.2, "kept": 16, "scored": 20}))
    metrics = {"overall": {"fid": 40.5, "emo_a": 0.8}, "per_emotion": {"awe": {"fid": 39.0, "emo_a": 0.9}}}

    text = training_section(run, shipped_pipeline.model.config, metrics, "awe")
    assert "- training: 2000 steps, batch 8 x 1 accumulation, AdamW lr 0.001" in text and "bf16 precision" in text
    assert "- data: 16 image-caption pairs from `manifest.jsonl` (awe 10, fear 6)" in text
    assert "- captioner: `hf:Qwen2.5-VL`" in text
    assert "- CLIP filter: bottom 20% per emotion dropped, 16 of 20 pairs kept" in text
    assert "| awe " in text and "| overall " in text and "40.5" in text
    assert "Notes from the run" not in text  # only a run with its own README.md has notes


def test_bad_requests_and_offline_push_fail_with_clear_messages(shipped_pipeline, tmp_path, capsys):
    with pytest.raises(CoEmoGenError, match="unknown emotion 'joy'"):
        export_run(tmp_path / "bad", emotions=["awe", "joy"], pipeline=shipped_pipeline)
    assert not (tmp_path / "bad").exists()  # checked before anything is written
    with pytest.raises(CoEmoGenError, match="--num-embeddings must be >= 0"):
        export_run(tmp_path / "bad", emotions=["awe"], num_embeddings=-1, pipeline=shipped_pipeline)
    with pytest.raises(CoEmoGenError, match="offline"):
        push_to_hub(tmp_path, "someone/coemogen-awe")

    from coemogen.cli import main

    out = tmp_path / "cli"
    code = main(["export", "--emotions", "fear", "--num-embeddings", "1", "--out", str(out), "--push_to_hub", "me/x"])
    assert code == 2 and "HF_HUB_OFFLINE=1" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "fear").iterdir()) == [
        "README.md",
        "USAGE.md",
        "embeddings",
        "fear.safetensors",
        "learned_embeds",
        "pytorch_lora_weights.safetensors",
    ]
    assert sorted(p.name for p in (out / "fear" / "embeddings").iterdir()) == [
        "fear_mean.safetensors",
        "fear_seed0.safetensors",
    ]
