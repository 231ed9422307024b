import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import WORLD_WORDS
from PIL import Image

from coemogen.captioning.captioners import AttributeCaptioner, HFCaptioner, OpenAICaptioner, build_prompt
from coemogen.captioning.runner import merge_shards, read_finished, run_captioning
from coemogen.data.images import ImageLoadError, load_rgb
from coemogen.data.manifest import SkipCounter
from coemogen.data.readers import DatasetItem, read_dataset
from coemogen.errors import CoEmoGenError
from coemogen.taxonomy import Taxonomy
from coemogen.testing import ChatCompletionsServer, build_tiny_captioner
from coemogen.world.oracle import OracleCaptioner

TAX = Taxonomy.default()


def test_taxonomy_builtins_files_and_mixes(tmp_path):
    assert TAX.num_emotions == 8 and TAX.group_of("fear") == "negative"
    art = Taxonomy.load("artemis")
    assert art.num_groups == 3 and art.group_of("something else") == "neutral"
    assert Taxonomy.load("emoart").num_emotions == 6
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"groups": {"up": ["joy"], "down": ["gloom", "dread"]}}))
    t = Taxonomy.load(path)
    assert t.emotions == ("joy", "gloom", "dread") and t.group_index_of("dread") == 1
    assert TAX.parse_mix("amusement:1, awe:3") == {"amusement": 0.25, "awe": 0.75}
    with pytest.raises(CoEmoGenError, match="known emotions: amusement, awe"):
        TAX.parse_mix("boredom")
    for bad in ("awe:x", "awe:0.5,,fear", "awe:-1", "awe:0", "awe,awe"):
        with pytest.raises(CoEmoGenError, match="malformed emotion mix"):
            TAX.parse_mix(bad)


def test_emoset_reader_accepts_3_and_4_field_records(tiny_world, tmp_path):
    items = read_dataset(tiny_world, TAX)
    assert len(items) == 32 and {i.split for i in items} <= {"train", "val", "test"}
    root = tmp_path / "emoset"
    shutil.copytree(tiny_world, root)
    records = json.loads((root / "train.json").read_text())
    records = [[e, Path(p).stem, p, a] for e, p, a in records] + [["awe", "bad"]]
    (root / "train.json").write_text(json.dumps(records))
    (root / "info.json").unlink()
    os.remove(root / records[0][3])  # a missing annotation file
    skips = SkipCounter()
    items = read_dataset(root, TAX, skips)
    assert len(items) == 32
    assert skips.reasons["malformed split record"] == 1
    assert skips.reasons["missing annotation (kept without attributes)"] == 1


def test_folder_reader_counts_empty_folders_and_unknown_names(tmp_path):
    for emotion, n in (("awe", 2), ("fear", 0), ("boredom", 1)):
        (tmp_path / emotion).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / emotion / f"{i}.png")
    with pytest.raises(CoEmoGenError, match="unknown emotion 'boredom'"):
        read_dataset(tmp_path, TAX)
    skips = SkipCounter()
    items = read_dataset(tmp_path, TAX, skips, skip_unknown=True)
    assert [i.emotion for i in items] == ["awe", "awe"]
    assert skips.reasons == {"empty emotion folder": 1, "unknown emotion": 1}


def test_artemis_and_table_readers(tmp_path):
    csv_path = tmp_path / "artemis.csv"
    csv_path.write_text(
        "art_style,painting,emotion,utterance,repetition\n"
        "Impressionism,p1,awe,vast sky,10\nImpressionism,p1,awe,so big,10\n"
        "Impressionism,p1,fear,dark,10\nRealism,p2,something else,odd,10\n"
    )
    with pytest.raises(CoEmoGenError, match="--image-dir"):
        read_dataset(csv_path, Taxonomy.load("artemis"))
    items = read_dataset(csv_path, Taxonomy.load("artemis"), image_dir=tmp_path / "wikiart")
    assert [(i.id, i.emotion) for i in items] == [("Impressionism/p1", "awe"), ("Realism/p2", "something else")]
    assert items[0].path == tmp_path / "wikiart" / "Impressionism" / "p1.jpg"
    table = tmp_path / "m.jsonl"
    table.write_text('{"path": "a.jpg", "emotion": "Fear"}\n{"path": "a.jpg", "emotion": "fear"}\n{"emotion": "awe"}\n')
    skips = SkipCounter()
    items = read_dataset(table, TAX, skips)
    assert len(items) == 1 and items[0].emotion == "fear"
    assert skips.reasons == {"duplicate id": 1, "missing field": 1}


def _bad_images(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(d / "good.jpg")
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes((d / "good.jpg").read_bytes()[:60])
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    Image.new("L", (20, 20), 128).save(d / "gray.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 0)).save(d / "rgba.png")
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(d / "deep16.png")
    Image.new("L", (9000, 9000)).save(d / "huge.png")
    odd = os.fsencode(str(d)) + b"/caf\xe9.png"  # a file name that is not UTF-8
    Image.new("RGB", (8, 8)).save(open(odd, "wb"), format="PNG")
    return {p.name: p for p in d.iterdir()}


def test_load_rgb_handles_every_odd_format(tmp_path):
    files = _bad_images(tmp_path)
    assert load_rgb(files["cmyk.jpg"]).mode == "RGB"
    assert load_rgb(files["gray.png"]).getpixel((0, 0)) == (128, 128, 128)
    assert load_rgb(files["rgba.png"]).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert load_rgb(files["deep16.png"]).getpixel((0, 0)) == (255, 255, 255)  # 16-bit rescaled, not clipped
    odd = next(p for name, p in files.items() if name.startswith("caf"))
    assert load_rgb(odd).size == (8, 8)
    for name, reason in (("empty.jpg", "empty file"), ("truncated.jpg", "unreadable"), ("huge.png", "too large")):
        with pytest.raises(ImageLoadError, match=reason):
            load_rgb(files[name], max_pixels=50_000_000)


def test_openai_captioner_retries_and_skips(tmp_path):
    files = _bad_images(tmp_path / "imgs")
    items = [DatasetItem(name, p, "awe") for name, p in sorted(files.items()) if name != "huge.png"]
    script = {0: 429, 1: 500, 2: 503, 3: "malformed", 4: "empty"}
    os.environ["TEST_CAPTION_KEY"] = "sk-secret-123"
    with ChatCompletionsServer(script=script) as server:
        cap = OpenAICaptioner(server.url, concurrency=1, backoff=0.01, api_key_env="TEST_CAPTION_KEY")
        out = tmp_path / "caps.jsonl"
        skips = SkipCounter()
        summary = run_captioning(items, cap, out, skips=skips)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert server.authorizations[0] == "Bearer sk-secret-123"
    assert "sk-secret" not in out.read_text()
    # 5 faults in a row (429, 500, 503, a malformed and an empty reply) are all retried: the only
    # skips are the 2 unreadable images
    assert dict(skips.reasons) == {"empty file": 1, "unreadable image": 1} and summary["failed"] == 0
    assert summary["written"] == len(records) == len(items) - 2 and server.requests == len(items) - 2 + 5
    assert all(r["caption"].startswith("a caption of image") and r["emotion"] == "awe" for r in records)


def test_openai_captioner_times_out_and_gives_up(tmp_path):
    files = _bad_images(tmp_path / "imgs")
    item = DatasetItem("g", files["good.jpg"], "awe")
    with ChatCompletionsServer(script={0: "slow", 1: "slow"}, slow_seconds=1.0) as server:
        result = OpenAICaptioner(server.url, timeout=0.2, max_retries=1, backoff=0.01).caption([item])[0]
        assert result.caption is None and "gave up after 2 attempts" in result.error
        assert OpenAICaptioner(server.url, timeout=2, backoff=0.01).caption([item])[0].caption


def test_openai_replies_are_written_as_they_land(tmp_path):
    files = _bad_images(tmp_path / "imgs")
    items = [DatasetItem(f"{k}", files["good.jpg"], "awe") for k in range(8)]
    with ChatCompletionsServer(script={0: "slow"}, slow_seconds=1.0) as server:
        out = tmp_path / "caps.jsonl"
        run_captioning(items, OpenAICaptioner(server.url, concurrency=4), out)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    # the one slow request did not hold back the seven behind it: it is written last
    assert len(records) == 8 and records[-1]["seconds"] >= 1.0
    assert max(r["seconds"] for r in records[:-1]) < 0.9


def test_hf_captioner_with_a_tiny_llava(tmp_path):
    """Loads through AutoProcessor / AutoModelForImageTextToText; batched == one at a time."""
    from coemogen.cli import main

    model = build_tiny_captioner(tmp_path / "llava", vocabulary=WORLD_WORDS)
    files = _bad_images(tmp_path / "imgs")
    names = ["good.jpg", "cmyk.jpg", "gray.png", "rgba.png", "empty.jpg"]
    items = [DatasetItem(n, files[n], e) for n, e in zip(names, ["awe", "anger", "sadness", "fear", "awe"])]
    batched = HFCaptioner(str(model), batch_size=5, max_new_tokens=6).caption(items)
    single = HFCaptioner(str(model), batch_size=1, max_new_tokens=6)
    alone = [single.caption([it])[0] for it in items]
    assert [r.caption for r in batched] == [r.caption for r in alone]
    assert all(r.caption for r in batched[:4]) and batched[4].error == "empty file"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,emotion\n" + "".join(f"{files[n]},{e.emotion}\n" for n, e in zip(names, items)))
    out = tmp_path / "caps.jsonl"
    args = ["caption", "--dataset", str(manifest), "--captioner", f"hf:{model}", "--out", str(out)]
    assert main(args + ["--batch-size", "2", "--max-new-tokens", "6", "--device", "cpu"]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 4 and {r["captioner"] for r in records} == {f"hf:{model}"}
    assert sorted(r["caption"] for r in records) == sorted(r.caption for r in batched[:4])


def test_resume_after_a_crash_equals_uninterrupted(tiny_world, tmp_path):
    items = read_dataset(tiny_world, TAX)
    with ChatCompletionsServer() as server:
        full = tmp_path / "full.jsonl"
        run_captioning(items, OpenAICaptioner(server.url, concurrency=4), full)
        part = tmp_path / "part.jsonl"
        run_captioning(items[:10], OpenAICaptioner(server.url, concurrency=4), part)
        with open(part, "a") as f:
            f.write('{"id": "half-writ')  # the crash left half a line
        assert len(read_finished(part)) == 10
        run_captioning(items, OpenAICaptioner(server.url, concurrency=4), part)

    def strip(path):
        return sorted((r["id"], r["caption"]) for r in map(json.loads, path.read_text().splitlines()))

    assert strip(part) == strip(full) and len(strip(full)) == 32


@pytest.mark.slow
def test_kill_and_resume_the_caption_command(tiny_world, tmp_path):
    out = tmp_path / "caps.jsonl"
    with ChatCompletionsServer(latency=0.05) as server:
        cmd = [
            sys.executable,
            "-m",
            "coemogen.cli",
            "caption",
            "--dataset",
            str(tiny_world),
            "--captioner",
            f"openai:{server.url}",
            "--concurrency",
            "1",
            "--out",
            str(out),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        first = len(out.read_text().splitlines())
        assert 3 <= first < 32
        assert subprocess.run(cmd, capture_output=True).returncode == 0
        full = tmp_path / "full.jsonl"
        subprocess.run(cmd[:-1] + [str(full)], check=True, capture_output=True)
    key = lambda p: sorted((r["id"], r["caption"]) for r in map(json.loads, p.read_text().splitlines()))  # noqa: E731
    assert key(out) == key(full) and len(key(full)) == 32


def test_shards_merge_to_the_whole(tiny_world, tmp_path):
    items = read_dataset(tiny_world, TAX)
    parts = []
    for k in range(3):
        parts.append(tmp_path / f"s{k}.jsonl")
        run_captioning(items, AttributeCaptioner(), parts[-1], shard=f"{k}/3")
    sizes = [len(p.read_text().splitlines()) for p in parts]
    whole = tmp_path / "all.jsonl"
    run_captioning(items, AttributeCaptioner(), whole)
    assert merge_shards(parts, tmp_path / "m.jsonl") == sum(sizes) == len(whole.read_text().splitlines())
    assert all(s > 0 for s in sizes)


def test_attribute_and_oracle_captioners(tiny_world):
    items = read_dataset(tiny_world, TAX)
    caps = AttributeCaptioner().caption(items)
    assert all(c.caption and c.caption.endswith(f"evoking {i.emotion}") for c, i in zip(caps, items))
    assert AttributeCaptioner().caption([DatasetItem("x", Path("x"), "awe")])[0].error == "no attributes"
    honest = OracleCaptioner(0.0).caption(items)
    liar = OracleCaptioner(1.0).caption(items)
    assert all(not c.extra["hallucinated"] for c in honest) and all(c.extra["hallucinated"] for c in liar)
    assert all(a.caption != b.caption for a, b in zip(honest, liar))
    no_prior = OracleCaptioner(0.0, emotion_prior=False).caption(items)
    assert not any("evoking" in c.caption for c in no_prior)
    assert "evokes awe" in build_prompt("awe") and "awe" not in build_prompt("awe", emotion_prior=False)


def test_caption_command_exit_codes(tiny_world, tmp_path):
    from coemogen.cli import main

    assert (
        main(["caption", "--dataset", str(tiny_world), "--captioner", "attributes", "--out", str(tmp_path / "c.jsonl")])
        == 0
    )
    assert (
        main(["caption", "--dataset", str(tiny_world), "--captioner", "nonsense", "--out", str(tmp_path / "d.jsonl")])
        == 2
    )
    assert (
        main(
            [
                "caption",
                "--dataset",
                str(tmp_path / "missing"),
                "--captioner",
                "attributes",
                "--out",
                str(tmp_path / "e.jsonl"),
            ]
        )
        == 2
    )


def test_filter_drops_bottom_share_per_emotion(tiny_world, tiny_models, tmp_path):
    from coemogen.captioning.filtering import filter_captions, keep_mask

    assert keep_mask([0.1, 0.5, 0.3, 0.9, 0.2], ["a", "a", "a", "a", "b"], 0.5) == [False, True, False, True, True]
    items = read_dataset(tiny_world, TAX)
    caps = tmp_path / "caps.jsonl"
    run_captioning(items, OracleCaptioner(0.25), caps)
    with open(caps, "a") as f:  # an overlong caption (truncated and counted) and a bad line
        f.write(
            json.dumps({"id": "long", "image": str(items[0].path), "emotion": "awe", "caption": "awe " * 200})
            + "\n{broken\n"
        )
    summary = filter_captions(caps, tmp_path / "manifest.jsonl", str(tiny_models[1]), drop=0.25)
    kept = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert summary["truncated_captions"] == 1 and summary["skipped"] == 1
    per = {r["emotion"]: r for r in summary["per_emotion"]}
    assert per["awe"]["kept"] == 4 and per["awe"]["dropped"] == 1  # 5 awe records, int(5 * 0.25) = 1 dropped
    assert per["fear"]["kept"] == 3 and per["fear"]["dropped"] == 1
    assert len(kept) == summary["kept"] == 25
    by_emotion = {}
    for r in kept:
        by_emotion.setdefault(r["emotion"], []).append(r["clip_score"])
    assert all("clip_score" in r and Path(r["image"]).is_file() for r in kept)
    assert (tmp_path / "manifest.hist.png").stat().st_size > 0
    assert "hallucination" in summary and 0 <= summary["hallucination"]["clip_share"] <= 1
