"""The rest of the paper: the art world and the EmoArt study, the emotion window and the timestep
analysis, emotion transfer, and the paper table's seeds, resumption and DreamBooth row."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from coemogen.errors import CoEmoGenError
from coemogen.pipelines.pipeline_coemogen import EmotionWindow
from coemogen.taxonomy import Taxonomy
from coemogen.world.dataset import build_world, read_truth


def test_the_art_world_paints_the_photo_worlds_scenes(tmp_path):
    photo = build_world(tmp_path / "photo", images_per_emotion=2, seed=5, size=32)
    art = build_world(tmp_path / "art", images_per_emotion=2, seed=5, size=32, style="art")
    assert read_truth(photo) == read_truth(art)  # the same content ...
    for path in read_truth(photo):
        a, b = (np.asarray(Image.open(root / path), dtype=float) for root in (photo, art))
        assert np.abs(a - b).mean() > 10  # ... in another domain
    assert json.loads((art / "info.json").read_text())["world"]["style"] == "art"
    emoart = build_world(tmp_path / "emoart", images_per_emotion=1, seed=5, size=32, style="art",
                         taxonomy=Taxonomy.load("emoart"))  # fmt: skip
    folders = sorted(p.name for p in (emoart / "image").iterdir())
    assert folders == sorted(Taxonomy.load("emoart").emotions) and "excitement" not in folders


@pytest.mark.slow
def test_emoart_quick_study(tmp_path):
    from coemogen.cli import main

    assert main(["bench", "emoart", "--quick", "--out", str(tmp_path / "emoart")]) == 0
    out = tmp_path / "emoart"
    selection = json.loads((out / "selection.json").read_text())
    assert selection["kept"] == sum(selection["kept_per_label"].values()) > 0
    assert set(selection["kept_per_label"]) == set(Taxonomy.load("emoart").emotions)
    assert 0 < selection["label_precision"] <= 1
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["emotion"] for r in manifest} <= set(Taxonomy.load("emoart").emotions)
    run_taxonomy = json.loads((out / "art-run" / "taxonomy.json").read_text())
    assert sum(len(v) for v in run_taxonomy["groups"].values()) == 6
    judges = json.loads((out / "art-judges" / "evaluators.json").read_text())
    assert judges["style"] == "art" and judges["emotions"] == list(Taxonomy.load("emoart").emotions)
    record = json.loads((out / "emoart.json").read_text())
    assert len(record["results"]) == 3
    for metrics in record["results"].values():
        assert 0 <= metrics["emo_a"] <= 1 and metrics["num_images"] == 2 * 6
    assert len((out / "emoart.md").read_text().splitlines()) == 2 + 3
    assert Image.open(out / "grids.png").size[1] > 0


def _pixels(output):
    return np.stack([np.asarray(im, dtype=float) for im in output.images])


def test_the_emotion_window_switches_condition_and_adapter_levels(shipped_pipeline, single_torch_thread):
    pipe = shipped_pipeline
    call = dict(num_images=2, seed=3, num_inference_steps=4)
    plain = _pixels(pipe("fear", **call))
    full = _pixels(pipe("fear", emotion_window=EmotionWindow(0, 4), **call))
    np.testing.assert_allclose(full, plain, atol=1)  # every step carries the emotion: the plain call
    off = {level: _pixels(pipe("fear", emotion_window=EmotionWindow(0, 0, level), **call)) for level in
           ("all", "emotion", "group")}  # fmt: skip
    assert np.abs(off["all"] - plain).mean() > 5  # neutral condition and no adapters
    assert np.abs(off["emotion"] - off["group"]).mean() > 1  # the two levels do different things
    first, last = (_pixels(pipe("fear", emotion_window=w, **call)) for w in (EmotionWindow(0, 2), EmotionWindow(2, 4)))
    assert np.abs(first - last).mean() > 1
    meta = pipe("fear", emotion_window=EmotionWindow(2, 4, "group"), **call).metadata[0]
    assert meta["emotion_window"] == {"start": 2, "stop": 4, "level": "group"}
    with pytest.raises(CoEmoGenError, match="window level"):
        EmotionWindow(0, 1, "polarity")


def test_analyze_timesteps_writes_plot_strips_and_resumes(tmp_path, single_torch_thread):
    from coemogen.analysis.timesteps import analyze_timesteps

    out = tmp_path / "ts"
    results = analyze_timesteps(None, out, num_images=1, num_inference_steps=2, ks=[0, 1, 2])
    assert len(results) == 3 * 2 * 3  # levels x directions x ks
    full = [r for r in results if r["k"] == 2]
    assert len({(r["emo_a"], r["polarity_acc"]) for r in full}) == 1  # k = T is the same images at every level
    assert Image.open(out / "timesteps.png").size[0] > 500
    strip = Image.open(out / "strips" / "all-first.png")
    assert strip.size[0] == 3 * 64  # one column per k
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3 + 2 * 3  # full, an "off" per level, first/last k=1 per level
    stamp = (out / "strips" / "cells" / "full.png").stat().st_mtime_ns
    again = analyze_timesteps(None, out, num_images=1, num_inference_steps=2, ks=[0, 1, 2])
    assert again == results and (out / "results.jsonl").read_text().splitlines() == lines
    assert (out / "strips" / "cells" / "full.png").stat().st_mtime_ns == stamp  # nothing generated again


def test_transfer_evaluation_scores_content_and_emotion(tmp_path, single_torch_thread):
    from coemogen.evaluation.transfer import content_prompt, evaluate_transfer

    assert content_prompt("a photo of {} bag") == "a photo of bag"
    with pytest.raises(CoEmoGenError, match="placeholder"):
        content_prompt("a photo of a bag")
    out = tmp_path / "transfer"
    summary = evaluate_transfer("a {} playground with a car", out, num_images=2, num_inference_steps=3)
    assert summary["content_prompt"] == "a playground with a car"
    assert -1 <= summary["content_kept"] <= 1 and -1 <= summary["base_model_content"] <= 1
    assert 0 <= summary["emo_a"] <= 1
    record = json.loads((out / "transfer.json").read_text())
    assert len(record["per_emotion"]) == 8
    meta = json.loads(next((out / "images" / "awe").glob("*.json")).read_text())
    assert meta["template"] == "a {} playground with a car"
    assert Image.open(out / "grid.png").size == (2 * 64, 9 * 64)  # a row per emotion and the base model's


@pytest.mark.slow
def test_paper_table_seeds_resume_and_dreambooth(tmp_path):
    from coemogen.experiments.paper_table import paper_table

    out = tmp_path / "table"
    rows = ["DreamBooth", "EmoGen", "CoEmoGen"]
    first = paper_table(out, scale="quick", seeds=1, rows=rows, num_resamples=50)
    assert {name: e["emo_a"].seeds for name, e in first.items()} == {"DreamBooth": 1, "EmoGen": 1, "CoEmoGen": 1}
    emogen = json.loads((out / "emogen" / "seed-0" / "run" / "config.json").read_text())
    assert emogen["method"] == "emogen" and not (out / "emogen" / "seed-0" / "run" / "hilora.safetensors").exists()
    lora = out / "dreambooth" / "seed-0" / "run" / "fear" / "pytorch_lora_weights.safetensors"
    from safetensors.torch import load_file

    keys = list(load_file(lora))
    assert keys and all(k.startswith("unet.") and "lora" in k for k in keys)
    stamp = (out / "coemogen" / "seed-0" / "report" / "samples.safetensors").stat().st_mtime_ns
    # the second seed of one row only (the resume is the same for every row); the table keeps them all
    second = paper_table(out, scale="quick", seeds=2, rows=["CoEmoGen"], num_resamples=50)
    assert (out / "coemogen" / "seed-0" / "report" / "samples.safetensors").stat().st_mtime_ns == stamp  # kept
    assert second["CoEmoGen"]["emo_a"].seeds == 2
    paper_table(out, scale="quick", seeds=2, rows=rows, num_resamples=50, measure=False)
    table = (out / "paper_table.md").read_text()
    assert "DreamBooth" in table and "Emo-A − CoEmoGen" in table and "| relation" not in table  # objects world
    record = json.loads((out / "paper_table.json").read_text())
    assert len(record["CoEmoGen"]["per_seed"]) == 2
    assert record["CoEmoGen"]["estimates"]["emo_a"]["low"] <= record["CoEmoGen"]["estimates"]["emo_a"]["high"]
    report_only = paper_table(out, scale="quick", seeds=3, rows=rows, num_resamples=50, measure=False)
    assert report_only["CoEmoGen"]["emo_a"].seeds == 2 and not (out / "coemogen" / "seed-2").exists()
    with pytest.raises(CoEmoGenError, match="other settings"):
        paper_table(out, scale="default", seeds=1, rows=rows)
    with pytest.raises(CoEmoGenError, match="unknown rows"):
        paper_table(tmp_path / "other", scale="quick", rows=["Imagen"])


def test_dreambooth_lora_changes_the_base_models_images(tmp_path, single_torch_thread):
    from coemogen.experiments.dreambooth import DreamBoothConfig, dreambooth_images, train_dreambooth_lora

    world = build_world(tmp_path / "world", images_per_emotion=2, seed=1, size=64)
    instance = sorted((world / "image" / "fear").glob("*.jpg"))
    made = {}
    for steps in (0, 3):  # 0: the LoRA as initialised (B = 0), i.e. the base model
        config = DreamBoothConfig(steps=steps, instance_batch=1, num_class_images=2, inference_steps=3,
                                  learning_rate=1e-2)  # fmt: skip
        lora = train_dreambooth_lora(instance, "an image of sks", instance, tmp_path / f"lora{steps}", config, seed=0)
        made[steps] = dreambooth_images(lora.parent, "an image of sks", "fear", 2, 0, config)
    assert [m["emotion"] for m in made[3].metadata] == ["fear", "fear"]
    assert np.abs(_pixels(made[3]) - _pixels(made[0])).mean() > 0.5


def test_a_claim_is_held_while_its_process_lives_and_taken_over_after(tmp_path):
    import subprocess
    import sys

    from coemogen.experiments.paper_table import claim

    work = tmp_path / "row" / "seed-0"
    assert claim(work) is True
    assert claim(work) is False  # held by a live process (this one)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "row" / "seed-0.claim").write_text(str(gone.pid))
    assert claim(work) is True  # its claimant is gone: taken over
    assert (tmp_path / "row" / "seed-0.claim").read_text() == str(os.getpid())
