"""Generation at evaluation scale: every emotion, in batches, resumable after a kill."""

import subprocess

from coemogen.cli import main
from coemogen.pipelines.pipeline_coemogen import completed_indices, generate_to_folders

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
