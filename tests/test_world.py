import hashlib
import json

import pytest

from coemogen.loaders import POCKET_CLIP, POCKET_SD, SHIPPED_RUN, load_base_models, resolve_sources
from coemogen.world.dataset import build_world
from coemogen.world.scenes import CONTENT

ANNOTATION_KEYS = {
    "emotion",
    "image_id",
    "brightness",
    "colorfulness",
    "scene",
    "object",
    "facial_expression",
    "human_action",
}


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_world_is_deterministic_and_follows_the_emoset_schema(tmp_path):
    a = build_world(tmp_path / "a", images_per_emotion=3, seed=5, size=32)
    b = build_world(tmp_path / "b", images_per_emotion=3, seed=5, size=32)
    c = build_world(tmp_path / "c", images_per_emotion=3, seed=6, size=32)
    assert _digest(a) == _digest(b) != _digest(c)
    info = json.loads((a / "info.json").read_text())
    assert list(info["emotion"]["label2idx"]) == list(CONTENT)
    records = sum((json.loads((a / f"{s}.json").read_text()) for s in ("train", "val", "test")), [])
    assert len(records) == 24
    for emotion, image_path, ann_path in records:
        assert image_path.startswith(f"image/{emotion}/{emotion}_") and image_path.endswith(".jpg")
        ann = json.loads((a / ann_path).read_text())
        assert ann["emotion"] == emotion and ann["image_id"] == image_path.split("/")[-1][:-4]
        assert set(ann) <= ANNOTATION_KEYS
        for key in ("brightness", "colorfulness"):
            if key in ann:
                assert 0 <= ann[key] <= 1 and round(ann[key], 1) == ann[key]
        if "object" in ann:
            assert all(o[0].isupper() for o in ann["object"])


def test_pocket_sd_loads_like_a_real_checkpoint():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(POCKET_SD, safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    sd, clip = resolve_sources()
    base = load_base_models(sd, clip)
    assert base.unet.config.sample_size == pipe.unet.config.sample_size
    total = sum(p.stat().st_size for p in POCKET_SD.parent.rglob("*.safetensors"))
    assert total <= 60 * 2**20, f"pocket weights are {total / 2**20:.1f} MB"
    assert (POCKET_SD / "README.md").is_file() and (POCKET_CLIP / "README.md").is_file()


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    from coemogen.errors import CoEmoGenError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CoEmoGenError, match="hf download"):
        load_base_models(*resolve_sources(preset="sd15"))


def test_main_command_generates_offline(tmp_path):
    from coemogen.cli import main

    assert SHIPPED_RUN.is_dir()
    assert main(["generate", "--emotion", "awe", "--num-images", "2", "--out", str(tmp_path), "--steps", "4"]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["awe_0000.png", "awe_0001.png", "grid.png"]
    meta = json.loads((tmp_path / "awe_0001.json").read_text())
    assert meta["emotion"] == "awe" and meta["seed"] == 1 and meta["weights"] == {"awe": 1.0}


def test_generate_rejects_bad_emotions_cleanly(tmp_path, capsys):
    from coemogen.cli import main

    assert main(["generate", "--emotion", "boredom", "--out", str(tmp_path)]) == 2
    assert "unknown emotion 'boredom'; known emotions: amusement" in capsys.readouterr().err
    assert main(["generate", "--emotion", "awe:lots", "--out", str(tmp_path)]) == 2
    assert "malformed emotion mix" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    from coemogen.demo import run_demo

    result = run_demo(tmp_path / "demo", quick=True)
    report = json.loads((tmp_path / "demo" / "report" / "metrics.json").read_text())
    assert set(report["per_emotion"]) == set(CONTENT)
    for key in ("fid", "lpips", "emo_a", "sem_c", "sem_d", "polarity_acc"):
        assert key in report["overall"]
    assert (tmp_path / "demo" / "report" / "report.html").stat().st_size > 1000
    assert all((tmp_path / "demo" / f"grid_{e}.png").is_file() for e in CONTENT)
    assert result["filter"]["kept"] > 0
    # the demo samples as the shipped run does, and its run directory says so
    shipped = json.loads((SHIPPED_RUN / "config.json").read_text())["cluster_temperature"]
    assert json.loads((tmp_path / "demo" / "run" / "config.json").read_text())["cluster_temperature"] == shipped
    meta = json.loads(next((tmp_path / "demo" / "generated" / "awe").glob("*.json")).read_text())
    assert meta["cluster_temperature"] == shipped


def test_paper_table_quick_gives_the_same_numbers_twice(tmp_path):
    from coemogen.bench import paper_table

    rows = ["Stable Diffusion", "CoEmoGen", "w/o L_SEM"]
    first = paper_table(tmp_path / "a", quick=True, seed=0, rows=rows)
    second = paper_table(tmp_path / "b", quick=True, seed=0, rows=rows)
    assert list(first) == rows and first == second
    assert json.loads((tmp_path / "a" / "paper_table.json").read_text()) == json.loads(
        (tmp_path / "b" / "paper_table.json").read_text()
    )
    assert first["CoEmoGen"] != first["w/o L_SEM"]  # the rows really are different configurations


def test_decoder_finetune_keeps_the_latent_space():
    import torch

    from coemogen.world.pocket import finetune_decoder, make_vae

    torch.manual_seed(0)
    vae = make_vae((16, 32), 32)
    images = (torch.rand(64, 3, 32, 32) * 255).to(torch.uint8)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    x = images[:16].float() / 127.5 - 1
    with torch.no_grad():
        loss_before = torch.nn.functional.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x)
    finetune_decoder(vae, images, steps=40, seed=0)
    after = vae.state_dict()
    encoder_keys = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder_keys = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder_keys and all(torch.equal(before[k], after[k]) for k in encoder_keys)
    assert any(not torch.equal(before[k], after[k]) for k in decoder_keys)
    with torch.no_grad():
        loss_after = torch.nn.functional.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x)
    assert loss_after < loss_before
