"""The narrative world (`coemogen world build --content narrative`): layout, determinism, the
objects world left byte-identical, the annotation's rates, the oracle's relational captions and
reasoning errors, and the relational-vs-bag probe."""

import dataclasses
import hashlib
import json
import random
from collections import Counter

import pytest

from coemogen.cli import main
from coemogen.data.readers import read_dataset
from coemogen.taxonomy import Taxonomy
from coemogen.world import narrative
from coemogen.world.dataset import ATTRIBUTE_DROP, build_world, read_truth
from coemogen.world.narrative import (
    RELATION,
    RELATIONS,
    annotate,
    build_narrative_world,
    describe_narrative,
    neutral_narrative_specs,
    read_narrative_truth,
    sample_narrative,
)
from coemogen.world.narrative_draw import RELATION_PAINTERS, render_narrative
from coemogen.world.narrative_probe import probe_world
from coemogen.world.oracle import OracleCaptioner, plausible_wrong_relation
from coemogen.world.paths import POCKET_SD, is_narrative

# One torch thread: the probe's small MLP collapses with two threads on shared cores (conftest.py).
pytestmark = pytest.mark.usefixtures("single_torch_thread")

ANNOTATION_KEYS = {"emotion", "image_id", "brightness", "colorfulness", "scene", "object", "facial_expression"}
ANNOTATION_KEYS |= {"human_action", "valence", "arousal"}

# sha256 over (relative path, bytes) of every file of `coemogen world build --images-per-emotion 3 --seed 5
# --size 32`, computed with the code before the narrative world existed (commit 946362a).
OBJECTS_WORLD_DIGEST = "d54d36054d69065da86189e8892f97d93b133d13549d859e1c504e1eee89eeb2"


def _digest(root, without_ratings=False):
    """`without_ratings`: annotations as they were before the valence/arousal ratings were added."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if without_ratings and p.parts[-3] == "annotation":
                annotation = json.loads(data)
                annotation.pop("valence"), annotation.pop("arousal")
                data = json.dumps(annotation).encode()
            h.update(str(p.relative_to(root)).encode() + data)
    return h.hexdigest()


def test_the_objects_world_is_byte_identical_to_before(tmp_path):
    """Every file as it was before the narrative world existed; the annotations have since gained
    their valence and arousal ratings (world/va.py), and are the same bytes without them."""
    world = build_world(tmp_path / "api", images_per_emotion=3, seed=5, size=32)
    assert _digest(world, without_ratings=True) == OBJECTS_WORLD_DIGEST
    main(["world", "build", "--out", str(tmp_path / "cli"), "--images-per-emotion", "3", "--seed", "5", "--size", "32"])
    assert _digest(tmp_path / "cli", without_ratings=True) == OBJECTS_WORLD_DIGEST
    assert "content" not in json.loads((tmp_path / "cli" / "info.json").read_text())["world"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("narrative") / "w"
    main(["world", "build", "--content", "narrative", "--out", str(root), "--images-per-emotion", "4", "--size", "32"])
    return root


def test_narrative_world_is_deterministic_and_in_the_emoset_layout(tiny, tmp_path):
    again = build_narrative_world(tmp_path / "again", images_per_emotion=4, seed=0, size=32)
    other = build_narrative_world(tmp_path / "other", images_per_emotion=4, seed=1, size=32)
    assert _digest(tiny) == _digest(again) != _digest(other)
    info = json.loads((tiny / "info.json").read_text())
    assert info["world"]["content"] == "narrative" and is_narrative(tiny)
    assert list(info["emotion"]["label2idx"]) == list(Taxonomy.default().emotions)
    assert list(info["relation"]["label2idx"]) == [r.name for r in RELATIONS]
    records = sum((json.loads((tiny / f"{s}.json").read_text()) for s in ("train", "val", "test")), [])
    assert len(records) == 32
    truth = read_narrative_truth(tiny)
    for emotion, image_path, ann_path in records:
        assert image_path == f"image/{emotion}/{image_path.split('/')[-1]}" and image_path.endswith(".jpg")
        ann = json.loads((tiny / ann_path).read_text())
        assert ann["emotion"] == emotion and set(ann) <= ANNOTATION_KEYS  # never the relation
        spec = truth[image_path]
        assert spec.emotion == emotion and spec.relation in RELATION and spec.objects[0] == spec.entity
    # the objects world's reader still reads the shared fields (scene, objects, lighting)
    assert set(read_truth(tiny)) == set(truth)
    # the readers take it as an EmoSet folder
    assert len(read_dataset(tiny, Taxonomy.default())) == 32


def test_every_relation_is_drawn_and_the_relation_changes_the_pixels():
    assert set(RELATION_PAINTERS) == set(RELATION)
    base = sample_narrative("fear", random.Random(3), relation_noise=0.0)
    images = {}
    for r in RELATIONS:
        spec = dataclasses.replace(base, relation=r.name, entity=r.entity, action=r.action, objects=[r.entity])
        images[r.name] = render_narrative(spec, 32).tobytes()
        assert render_narrative(spec, 32).tobytes() == images[r.name]  # a spec always gives the same pixels
    assert len(set(images.values())) == len(RELATIONS)
    mirrored = dataclasses.replace(base, mirrored=not base.mirrored)
    assert render_narrative(mirrored, 32).tobytes() != render_narrative(base, 32).tobytes()


def test_the_word_set_is_ambiguous_and_the_relation_decides():
    groups: dict[tuple[str, str], set[str]] = {}
    for r in RELATIONS:
        groups.setdefault((r.entity, r.action), set()).add(r.emotion)
    shared = [g for g, emotions in groups.items() if len(emotions) > 1]
    assert len(shared) >= 0.7 * len(groups)
    for entity in narrative.ENTITIES:  # every entity takes part in relations of both polarities
        polarities = {Taxonomy.default().group_of(r.emotion) for r in RELATIONS if r.entity == entity}
        assert polarities == {"positive", "negative"}
    for emotion in Taxonomy.default().emotions:
        assert any(r.emotion == emotion for r in RELATIONS)
    # word order carries who does what: the same words, two relations of different emotions
    chase, chased = RELATION["dog_chases_person"], RELATION["person_chases_dog"]
    assert sorted(chase.sentence().split()) == sorted(chased.sentence().split())
    assert chase.sentence() != chased.sentence() and chase.emotion != chased.emotion
    spec = next(neutral_narrative_specs(1, 0))
    text = describe_narrative(spec)
    assert RELATION[spec.relation].sentence(spec.entity) in text
    assert not any(e in text for e in Taxonomy.default().emotions)


def test_annotation_rates_match_the_stated_ones():
    rng = random.Random(0)
    n = 4000
    empty = generic = 0
    for i in range(n):
        spec = sample_narrative(Taxonomy.default().emotions[i % 8], rng)
        ann = annotate(spec, f"x_{i}", (0.5, 0.5), rng)
        if set(ann) == {"emotion", "image_id"}:
            empty += 1
        elif narrative.GENERIC[spec.entity] in ann.get("object", []) and spec.entity.title() not in ann["object"]:
            generic += 1
    assert abs(empty / n - narrative.NO_ATTRIBUTES_RATE) < 0.02
    # generic naming among annotations that kept their object list
    kept_objects = n * (1 - narrative.NO_ATTRIBUTES_RATE) * (1 - ATTRIBUTE_DROP)
    assert abs(generic / kept_objects - narrative.GENERIC_RATE) < 0.04


def test_oracle_states_the_relation_and_marks_hallucinations_and_reasoning_errors(tiny):
    items = read_dataset(tiny, Taxonomy.default())
    truth = read_narrative_truth(tiny)
    results = OracleCaptioner(0.3, seed=1, reasoning_error_rate=0.4).caption(items)
    assert results == OracleCaptioner(0.3, seed=1, reasoning_error_rate=0.4).caption(list(reversed(items)))[::-1]
    flags = Counter()
    for item, result in zip(items, results):
        spec = truth[str(item.path.relative_to(tiny))]
        written = RELATION[result.extra["relation"]]
        flags["hallucinated"] += result.extra["hallucinated"]
        flags["reasoning_error"] += result.extra["reasoning_error"]
        assert result.caption.endswith(f"evoking {item.emotion}")
        if result.extra["reasoning_error"]:
            assert written.name != spec.relation and written.emotion != RELATION[spec.relation].emotion
            assert written.entity == spec.entity  # a wrong reading of the right objects
        else:
            assert written.name == spec.relation
        entity = spec.entity if not result.extra["hallucinated"] else None
        if entity:
            assert written.sentence(entity) in result.caption and spec.scene in result.caption
    assert flags["hallucinated"] and flags["reasoning_error"]  # 32 items at 0.3 and 0.4


def test_a_plausible_wrong_relation_keeps_the_words_where_it_can():
    rng = random.Random(0)
    wrong = plausible_wrong_relation(RELATION["dog_chases_person"], rng)
    assert wrong.name == "person_chases_dog"
    for r in RELATIONS:
        w = plausible_wrong_relation(r, rng)
        assert w.entity == r.entity and w.emotion != r.emotion


def test_probe_runs_and_rejects_an_objects_world(tiny, tmp_path, capsys):
    report = probe_world(tiny)
    for kind in ("relational", "truth_bag", "annotation_bag"):
        assert 0.0 <= report[kind] <= 1.0
    assert report["relational_minus_annotation_bag"] == round(report["relational"] - report["annotation_bag"], 4)
    main(["world", "probe", str(tiny), "--out", str(tmp_path / "probe.json")])
    assert json.loads((tmp_path / "probe.json").read_text()) == report
    with pytest.raises(ValueError, match="not a narrative world"):
        probe_world(build_world(tmp_path / "objects", images_per_emotion=1, size=32))


def test_the_narrative_unet_fine_tune_resumes_where_it_stopped(tmp_path):
    import torch
    from diffusers import UNet2DConditionModel

    from coemogen.world.pocket import finetune_unet

    def unet():
        torch.manual_seed(0)
        return UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(8, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=4,
            norm_num_groups=4,
        )

    g = torch.Generator().manual_seed(1)
    latents, states = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 5, 16, generator=g)
    args = dict(latents=latents, text_states=states, empty_state=torch.zeros(5, 16), seed=0, batch_size=2, every=2)
    whole = unet()
    finetune_unet(whole, steps=4, checkpoint=tmp_path / "a", log=lambda _: None, **args)
    resumed = unet()
    finetune_unet(resumed, steps=2, checkpoint=tmp_path / "b", log=lambda _: None, **args)  # "killed" at step 2
    again = unet()
    losses = finetune_unet(again, steps=4, checkpoint=tmp_path / "b", log=lambda _: None, **args)
    assert len(losses) == 1  # only the block after the checkpoint ran
    for (name, a), b in zip(whole.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_narrative_judges_have_a_relation_head_and_resume(tiny, tmp_path):
    from coemogen.world.judges import build_evaluators

    report = build_evaluators(tmp_path / "j", tiny, images_per_emotion=2, steps=2, size=32, content="narrative")
    assert {"emotion_accuracy", "relation_accuracy", "scene_accuracy", "object_top1_present"} <= set(report)
    assert report["relations"] == [r.name for r in RELATIONS]
    weights = tmp_path / "j" / "semantics" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = build_evaluators(tmp_path / "j", tiny, images_per_emotion=2, steps=2, size=32, content="narrative")
    assert weights.stat().st_mtime_ns == stamp  # the trained judges are reused, not retrained
    assert again["relation_accuracy"] == report["relation_accuracy"]


def test_pocket_clip_word_order_check_runs(tmp_path):
    import numpy as np
    import torch
    from transformers import CLIPModel

    from coemogen.world.pocket import build_tokenizer, clip_config, word_order_accuracy

    specs = list(neutral_narrative_specs(8, 0))
    tokenizer = build_tokenizer([describe_narrative(s) for s in specs], tmp_path / "tok", ["a", "the"])
    torch.manual_seed(0)
    clip = CLIPModel(clip_config(tokenizer, 32, width=32, layers=1, heads=2)).eval()
    images = torch.stack([torch.from_numpy(np.asarray(render_narrative(s, 32))).permute(2, 0, 1) for s in specs])
    result = word_order_accuracy(clip, tokenizer, images, specs)
    assert 0.0 <= result["true description over person/entity swapped (all, 8 images)"] <= 1.0


def test_the_shipped_narrative_models_load_and_run():
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPTokenizer

    from coemogen.data.images import to_tensor
    from coemogen.io import PICKLE_SUFFIXES
    from coemogen.models.clip import text_embeds
    from coemogen.world.judges import WorldCNN

    assets = POCKET_SD.parent
    for name in ("narrative-pocket-clip", "narrative-pocket-sd", "narrative-evaluators"):
        files = [p for p in (assets / name).rglob("*") if p.is_file()]
        assert files and not [p for p in files if p.suffix in PICKLE_SUFFIXES]  # safetensors only
        assert sum(p.stat().st_size for p in files) < 30 * 2**20
    tokenizer = CLIPTokenizer.from_pretrained(assets / "narrative-pocket-clip")
    clip = CLIPModel.from_pretrained(assets / "narrative-pocket-clip").eval()
    ids = tokenizer(["the dog chases the person", "the person chases the dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        text = text_embeds(clip, ids.input_ids)
    assert not torch.allclose(text[0], text[1])  # word order changes the embedding
    pipe = StableDiffusionPipeline.from_pretrained(assets / "narrative-pocket-sd", safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a bright colorful picture of a meadow: the person hugs the figure", num_inference_steps=2).images[0]
    semantics = WorldCNN.load(assets / "narrative-evaluators" / "semantics")
    with torch.no_grad():
        out = semantics(to_tensor(image, 64)[None])
    assert out["relation"].shape == (1, len(RELATIONS))
    assert WorldCNN.load(assets / "narrative-evaluators" / "emotion-judge").config["heads"] == {"emotion": 8}
