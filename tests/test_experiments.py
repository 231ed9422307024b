import json
import math

import numpy as np
import pytest
from PIL import Image

from coemogen.taxonomy import Taxonomy
from coemogen.world.paths import SHIPPED_RUN


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    from coemogen.experiments.demo import QUICK, run_demo

    emotions = Taxonomy.default().emotions
    result = run_demo(tmp_path / "demo", quick=True)
    report = json.loads((tmp_path / "demo" / "report" / "metrics.json").read_text())
    assert set(report["per_emotion"]) == set(emotions)
    overall = report["overall"]
    for key in ("emo_a", "polarity_acc", "sem_c"):
        assert 0.0 <= overall[key] <= 1.0, key
    assert math.isfinite(overall["fid"]) and overall["fid"] >= 0
    assert overall["lpips"] >= 0 and overall["sem_d"] >= 0
    assert overall["num_images"] == QUICK.generated_per_emotion * len(emotions)
    assert (tmp_path / "demo" / "report" / "report.html").stat().st_size > 1000
    for emotion in emotions:
        grid = np.asarray(Image.open(tmp_path / "demo" / f"grid_{emotion}.png"))
        assert grid.shape == (64, 64 * QUICK.generated_per_emotion, 3)  # one row of the emotion's images
        assert grid.std() > 5  # drawn, not blank
    assert result["filter"]["kept"] > 0
    assert set(result["timings"]) == {"world build", "caption (oracle)", "filter (pocket CLIP)", "train", "generate",
                                      "evaluate"}  # fmt: skip
    # the demo samples as the shipped run does, and its run directory says so
    shipped = json.loads((SHIPPED_RUN / "config.json").read_text())["cluster_temperature"]
    assert json.loads((tmp_path / "demo" / "run" / "config.json").read_text())["cluster_temperature"] == shipped
    meta = json.loads(next((tmp_path / "demo" / "generated" / "awe").glob("*.json")).read_text())
    assert meta["cluster_temperature"] == shipped


@pytest.mark.slow
def test_paper_table_quick_gives_the_same_numbers_twice(tmp_path):
    from coemogen.experiments.paper_table import paper_table

    rows = ["Stable Diffusion", "CoEmoGen", "w/o L_SEM"]
    first = paper_table(tmp_path / "a", scale="quick", seed=0, rows=rows, num_resamples=50)
    assert list(first) == rows
    assert first["CoEmoGen"] != first["w/o L_SEM"]  # the rows really are different configurations
    again = paper_table(tmp_path / "b", scale="quick", seed=0, rows=["CoEmoGen"], num_resamples=50)
    assert again["CoEmoGen"] == first["CoEmoGen"]
    per_seed = [json.loads((tmp_path / d / "paper_table.json").read_text())["CoEmoGen"]["per_seed"] for d in "ab"]
    assert per_seed[0] == per_seed[1]
