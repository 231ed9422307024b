"""Editing a user's own image toward an emotion (`CoEmoGenEditPipeline`, `coemogen edit`)."""

import json

import numpy as np
import pytest
from PIL import Image

from coemogen.cli import main
from coemogen.errors import CoEmoGenError
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.pipelines.pipeline_edit import CoEmoGenEditPipeline

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def edit_pipe():
    return CoEmoGenEditPipeline.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def source(edit_pipe):
    """An image the shipped model makes, at its resolution."""
    return CoEmoGenPipeline.__call__(edit_pipe, "awe", num_images=1, seed=5, num_inference_steps=8).images[0]


def _error(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def test_strength_zero_returns_the_source_through_the_vae(edit_pipe, source):
    out = edit_pipe(source, "fear", strength=0.0, num_inference_steps=10)
    round_trip = edit_pipe.postprocess(edit_pipe.decode(edit_pipe.encode(source)))[0]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(round_trip))
    assert _error(out.images[0], source) < 12  # the pocket VAE's own round-trip error, in 8-bit levels


def test_inversion_at_the_neutral_condition_reconstructs_closer_than_sdedit(edit_pipe, source):
    common = dict(strength=0.6, num_inference_steps=10, guidance_scale=1.0)
    sdedit = edit_pipe(source, None, method="sdedit", **common).images[0]
    inversion = edit_pipe(source, None, method="inversion", **common).images[0]
    assert _error(inversion, source) < _error(sdedit, source)


def test_an_edit_moves_toward_the_emotion_keeps_the_size_and_follows_the_seed(edit_pipe, source):
    wide = source.resize((96, 64))
    a = edit_pipe(wide, "fear", strength=0.7, num_inference_steps=8, seed=3)
    b = edit_pipe(wide, "fear", strength=0.7, num_inference_steps=8, seed=3)
    c = edit_pipe(wide, "fear", strength=0.7, num_inference_steps=8, seed=4)
    assert a.images[0].size == (96, 64) and edit_pipe.edit_size((96, 64)) == (96, 64)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    assert _error(a.images[0], wide) > 5  # it changed the image
    assert a.metadata[0]["emotion"] == "fear" and a.metadata[0]["method"] == "sdedit"
    kept = edit_pipe(wide, "fear", strength=0.7, num_inference_steps=8, seed=3, restore_size=False)
    assert kept.images[0].size == edit_pipe.edit_size((96, 64))
    with pytest.raises(CoEmoGenError, match="strength must be in"):
        edit_pipe(source, "fear", strength=1.5)
    with pytest.raises(CoEmoGenError, match="unknown edit method"):
        edit_pipe(source, "fear", method="instruct")


def test_an_sdxl_run_edits_a_non_square_image(tiny_sdxl_models, tiny_world, tmp_path):
    run = tmp_path / "sdxl-run"
    argv = ["train", "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(run)]
    argv += ["--pretrained_model_name_or_path", str(tiny_sdxl_models[0])]
    argv += ["--clip_model_name_or_path", str(tiny_sdxl_models[1])]
    assert main([*argv, "--max_train_steps", "2", "--train_batch_size", "4", "--validation_steps", "0"]) == 0
    pipe = CoEmoGenEditPipeline.from_pretrained(run, device="cpu")
    image = Image.new("RGB", (48, 32), (30, 120, 200))
    for method in ("sdedit", "inversion"):
        out = pipe(image, "sadness", strength=0.5, method=method, num_inference_steps=4)
        assert out.images[0].size == (48, 32)


def test_the_edit_command_names_every_file_it_skips_and_completes_a_folder(tmp_path, source, capsys):
    images = tmp_path / "photos"
    (images / "awe").mkdir(parents=True)
    source.save(images / "awe" / "mountain.png")
    source.resize((80, 64)).save(images / "street.jpg")
    (images / "empty.png").write_bytes(b"")
    (images / "notes.txt").write_text("not an image")
    source.save(images / "anim.gif")
    out = tmp_path / "edits"
    argv = ["edit", "--images", str(images), "--emotion", "all", "--out", str(out), "--steps", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    edits = sorted(p.name for p in out.glob("*.png") if p.name != "grid.png")
    # every emotion for street.jpg, every emotion but awe for awe/mountain.png
    assert len(edits) == 8 + 7 and "mountain_awe.png" not in edits and "street_awe.png" in edits
    assert "skipped 3 file(s)" in printed and "unsupported format" in printed and "empty file" in printed
    meta = json.loads((out / "street_fear.json").read_text())
    assert meta["source"].endswith("street.jpg") and meta["method"] == "sdedit" and meta["strength"] == 0.6
    assert Image.open(out / "street_fear.png").size == (80, 64) and (out / "grid.png").is_file()
    # interrupted: two edits lost; the re-run makes exactly those again
    (out / "street_fear.json").unlink()
    (out / "mountain_anger.png").unlink()
    assert main(argv) == 0
    assert "edited 2 image(s)" in capsys.readouterr().out
    # a single file that cannot be edited is an error (exit status 2)
    assert main(["edit", "--images", str(images / "empty.png"), "--emotion", "awe", "--out", str(out)]) == 2
    assert main(["edit", "--images", str(images / "street.jpg"), "--emotion", "joy", "--out", str(out)]) == 2


def test_edit_metrics_equal_their_definitions_and_the_command_reports_them(tmp_path, source, capsys):
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from coemogen.evaluation.metrics import EmotionGain, PeakSignalToNoiseRatio, StructuralSimilarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 24, 32, generator=g)
    b = (a + 0.1 * torch.randn(2, 3, 24, 32, generator=g)).clamp(0, 1)
    psnr, ssim = PeakSignalToNoiseRatio(), StructuralSimilarity()
    psnr.update(a, b)
    ssim.update(a, b)
    for i in range(2):
        assert psnr.per_sample()[i] == pytest.approx(
            float(peak_signal_noise_ratio(a[i : i + 1].double(), b[i : i + 1].double(), data_range=1.0))
        )  # noqa: E501
        assert ssim.per_sample()[i] == pytest.approx(
            float(structural_similarity_index_measure(a[i : i + 1].double(), b[i : i + 1].double(), data_range=1.0))
        )  # noqa: E501
    gain = EmotionGain()
    gain.update(torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
    assert gain.compute() == pytest.approx(
        float(torch.tensor([0.0, 2.0]).softmax(0)[1] - torch.tensor([2.0, 0.0]).softmax(0)[1])
    )

    # the command on a world's images: every (source emotion -> target) cell and overall, with intervals
    from coemogen.world.dataset import build_world

    world = build_world(tmp_path / "world", images_per_emotion=1, seed=0, size=64)
    sources = tmp_path / "sources"
    for emotion in ("awe", "fear"):
        (sources / emotion).mkdir(parents=True)
        next((world / "image" / emotion).iterdir()).rename(sources / emotion / f"{emotion}.png")
    (sources / "info.json").write_text((world / "info.json").read_text())  # a world's images: its judges
    edits = tmp_path / "edits"
    assert main(["edit", "--images", str(sources), "--emotion", "sadness", "--out", str(edits), "--steps", "3"]) == 0
    assert main(["evaluate", "--edits", str(edits), "--sources", str(sources), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "edits.json").read_text())
    names = [r["edits"] for r in report["rows"]]
    assert names == ["overall", "awe -> sadness", "fear -> sadness"]
    overall = report["rows"][0]
    assert overall["n"] == 2 and 0 <= overall["emo_a"]["value"] <= 1
    for key in ("psnr", "ssim", "lpips", "clip_i", "emo_s"):
        assert overall[key]["low"] <= overall[key]["value"] <= overall[key]["high"], key
    assert "world emotion judge" in report["settings"]["networks"]["emo_a"]
    assert "Emo-S" in capsys.readouterr().out


@pytest.mark.slow
def test_the_edit_table_runs_resumes_and_reports_every_row(tmp_path):
    """The comparison at the paper table's smoke scale: every row's edits judged, the table with each
    row's difference from CoEmoGen SDEdit, the sweep plot and the grid; a re-run redoes nothing."""
    from coemogen.experiments.edit_table import ROWS, edit_table

    table = edit_table(tmp_path / "edit", scale="quick", seeds=1, sources_per_emotion=1, num_resamples=50)
    record = json.loads((tmp_path / "edit" / "edit_table.json").read_text())
    counts = {r["edits_per_seed"] for r in record.values()}
    assert list(record) == list(ROWS) and len(counts) == 1 and counts.pop() % 7 == 0  # every other emotion
    assert "emo_a_reference_minus_row" in record["base model SDEdit"] and "Emo-A" in table
    for name in ("tradeoff.png", "grid.png", "sweep.json"):
        assert (tmp_path / "edit" / name).stat().st_size > 0
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "edit").rglob("*.png") if "edits" in p.parts}
    edit_table(tmp_path / "edit", scale="quick", seeds=1, sources_per_emotion=1, num_resamples=50)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # nothing edited again
