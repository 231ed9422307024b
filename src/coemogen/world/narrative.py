"""The narrative world (`coemogen world build --content narrative`): the emotion of an image is
carried by a relation between a person and an entity (who acts on whom, and how), not by the set of
things in it.

The paper's case against word-level attributes is that they are "isolated": EmoSet lists a scene,
objects, a facial expression and a human action, but not why a person is sad, and it can name the
trigger by a generic category (a clown labelled only as a fashion accessory) or give no attributes
at all. This world makes that testable:

- 18 relations (`RELATIONS`) between the person and one of four entities (dog, clown, figure,
  giant). Each relation belongs to one emotion; each entity and each of the person's poses occur in
  relations of several emotions, and most (entity, pose) pairs are shared by two relations of
  different emotions ("the dog chases the person" / "the person chases the dog"), so the word set
  of an image is ambiguous about its emotion and the relation decides it.
- Scenes, props and lighting are shared across emotions. As in real photographs some lean: each
  emotion prefers some scenes and props (`SCENE_LEAN`, `PROP_LEAN`), and a polarity shares its
  low-level cues (bright and colourful, or dark and muted), with the same rates as the objects world.
- The EmoSet-style annotation (`annotate`) lists scene, objects, facial expression and the person's
  action, never the relation; it names the entity by a generic category at `GENERIC_RATE`, gives an
  image no attributes at `NO_ATTRIBUTES_RATE`, and drops single attributes at `ATTRIBUTE_DROP` (the
  objects world's rate). `truth.jsonl` keeps everything, the relation included.

Drawing lives in `narrative_draw.py`; the classifier probe that measures how much of the emotion the
attribute bag carries against the relation is `narrative_probe.py`. The objects world
(`scenes.py`, `renderer.py`, `dataset.py`) is untouched by this module: it only reuses the objects
world's scene painters and a few of its object painters, and its `image_stats`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import CoEmoGenError
from ..io import atomic_output, write_text
from ..taxonomy import Taxonomy
from .dataset import ATTRIBUTE_DROP, SPLITS, _pick_split, image_stats
from .scenes import EXPRESSIONS
from .va import rate_world


@dataclass(frozen=True)
class Relation:
    """Who does what to whom: `template` is the sentence, with `{e}` for the entity's word."""

    name: str
    emotion: str
    entity: str
    action: str  # the person's pose alone, as EmoSet's human_action would name it
    template: str

    def sentence(self, entity_word: str | None = None) -> str:
        return self.template.format(e=entity_word or self.entity)


# The person's poses (EmoSet's human_action names what the person does, seen alone).
ACTION_WORDS = {
    "running": "running",
    "kneeling": "kneeling",
    "standing": "standing",
    "arms_out": "reaching out",
    "arms_up": "raising arms",
    "looking_up": "looking up",
}

# Grouped by (entity, pose): within a group the word set is the same and only the relation differs.
RELATIONS: tuple[Relation, ...] = (
    Relation("dog_chases_person", "fear", "dog", "running", "the {e} chases the person"),
    Relation("person_chases_dog", "excitement", "dog", "running", "the person chases the {e}"),
    Relation("person_feeds_dog", "contentment", "dog", "kneeling", "the person kneels and feeds the {e}"),
    Relation("person_mourns_dog", "sadness", "dog", "kneeling", "the person kneels over the {e} lying still"),
    Relation("clown_juggles_for_person", "amusement", "clown", "standing", "the {e} juggles for the person"),
    Relation("clown_stalks_person", "fear", "clown", "standing", "the {e} creeps up behind the person"),
    Relation("person_shoves_clown", "anger", "clown", "arms_out", "the person shoves the {e} over"),
    Relation("clown_spits_on_person", "disgust", "clown", "arms_out", "the {e} spits on the person"),
    Relation("person_dances_with_figure", "amusement", "figure", "arms_up", "the person dances with the {e}"),
    Relation("person_fights_figure", "anger", "figure", "arms_up", "the person fights the {e}"),
    Relation("person_hugs_figure", "contentment", "figure", "arms_out", "the person hugs the {e}"),
    Relation("figure_vomits_on_person", "disgust", "figure", "arms_out", "the {e} vomits on the person"),
    Relation("person_mourns_figure", "sadness", "figure", "kneeling", "the person kneels over the {e} lying still"),
    Relation("person_proposes_to_figure", "excitement", "figure", "kneeling", "the person kneels to the {e} with a ring"),  # noqa: E501
    Relation("person_admires_giant", "awe", "giant", "looking_up", "the person looks up at the {e} far away"),
    Relation("giant_looms_over_person", "fear", "giant", "looking_up", "the {e} looms over the person"),
    Relation("person_bows_to_giant", "awe", "giant", "kneeling", "the person kneels before the {e} far away"),
    Relation("giant_lifts_person", "excitement", "giant", "arms_up", "the {e} lifts the person high"),
)  # fmt: skip
RELATION = {r.name: r for r in RELATIONS}
ENTITIES = ["dog", "clown", "figure", "giant"]
# EmoSet's object vocabulary is generic: a clown is detected as a fashion accessory (the paper's
# example), a second person or a giant as a person.
GENERIC = {"dog": "Animal", "clown": "Fashion Accessory", "figure": "Person", "giant": "Person"}

# Scenes and props are the objects world's (same painters), shared by every emotion.
SCENES = ["beach", "cemetery", "circus", "forest", "meadow", "mountain", "playground", "street"]
PROPS = ["balloon", "ball", "car", "flower", "grave", "trash", "tree", "umbrella"]
SCENE_LEAN = {
    "amusement": ["circus", "playground"],
    "awe": ["mountain", "beach"],
    "contentment": ["meadow", "beach"],
    "excitement": ["playground", "circus"],
    "anger": ["street"],
    "disgust": ["street", "forest"],
    "fear": ["forest", "street"],
    "sadness": ["cemetery", "street"],
}
PROP_LEAN = {
    "amusement": ["balloon", "ball"],
    "awe": ["tree"],
    "contentment": ["flower", "tree"],
    "excitement": ["ball", "balloon"],
    "anger": ["car", "trash"],
    "disgust": ["trash"],
    "fear": ["tree", "car"],
    "sadness": ["umbrella", "grave"],
}
# The face a person shows in a relation of each emotion (when the face is readable at all).
FACE = {
    "amusement": "happy",
    "awe": "surprise",
    "contentment": "happy",
    "excitement": "happy",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "sadness": "sad",
}

# Rates (docs/world-narrative.md says where each comes from).
RELATION_NOISE = 0.1  # an image whose relation is drawn from all relations (any emotion)
SCENE_LEAN_RATE = 0.35  # the scene comes from the emotion's preferred scenes, else from all scenes
PROP_LEAN_RATE = 0.35  # likewise for each prop
FACE_RATE = 0.35  # the person's expression is readable (EmoSet lists one only for detected faces)
EXPRESSION_NOISE = 0.2  # a readable face whose expression does not follow the relation
POLARITY_FLIP = 0.15  # low-level cues of the other polarity (as the objects world)
GENERIC_RATE = 0.3  # the annotation names the entity by its generic category
NO_ATTRIBUTES_RATE = 0.1  # the annotation has no attributes at all


@dataclass
class NarrativeSpec:
    """Everything needed to render (and describe) one narrative image. `objects` holds every
    visible thing, the entity first, then the props (what the Sem-C judges and the hallucination
    swaps act on)."""

    emotion: str
    relation: str
    entity: str
    scene: str
    objects: list[str]
    expression: str | None
    action: str
    brightness: float
    saturation: float
    layout_seed: int
    mirrored: bool

    @property
    def props(self) -> list[str]:
        return self.objects[1:]


def _lighting(positive: bool, rng: random.Random) -> tuple[float, float]:
    brightness = rng.uniform(0.6, 0.95) if positive else rng.uniform(0.15, 0.5)
    saturation = rng.uniform(0.55, 0.95) if positive else rng.uniform(0.05, 0.4)
    return brightness, saturation


def sample_narrative(emotion: str, rng: random.Random, relation_noise: float = RELATION_NOISE) -> NarrativeSpec:
    """Draw a narrative scene for `emotion` (one of the 8 Mikels emotions)."""
    own = [r for r in RELATIONS if r.emotion == emotion]
    relation = rng.choice(RELATIONS) if rng.random() < relation_noise else rng.choice(own)
    scene = rng.choice(SCENE_LEAN[emotion]) if rng.random() < SCENE_LEAN_RATE else rng.choice(SCENES)
    props = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        props.append(rng.choice(PROP_LEAN[emotion]) if rng.random() < PROP_LEAN_RATE else rng.choice(PROPS))
    expression = None
    if rng.random() < FACE_RATE:
        expression = FACE[relation.emotion] if rng.random() > EXPRESSION_NOISE else rng.choice(EXPRESSIONS)
    positive = Taxonomy.default().group_of(emotion) == "positive"
    if rng.random() < POLARITY_FLIP:
        positive = not positive
    brightness, saturation = _lighting(positive, rng)
    return NarrativeSpec(
        emotion,
        relation.name,
        relation.entity,
        scene,
        [relation.entity, *dict.fromkeys(props)],
        expression,
        relation.action,
        brightness,
        saturation,
        rng.randrange(2**31),
        rng.random() < 0.5,
    )


def light_words(spec: NarrativeSpec) -> tuple[str, str]:
    return ("bright" if spec.brightness > 0.55 else "dark"), ("colorful" if spec.saturation > 0.5 else "muted")


def describe_narrative(spec: NarrativeSpec) -> str:
    """A neutral description (no emotion words) for pretraining the pocket models: the relation in
    words whose order carries who does what ("the dog chases the person" is not "the person chases
    the dog")."""
    light, color = light_words(spec)
    text = f"a {light} {color} picture of a {spec.scene}"
    if spec.props:
        text += " with " + " and ".join(spec.props)
    text += ": " + RELATION[spec.relation].sentence(spec.entity)
    if spec.expression:
        text += f", the person has a {spec.expression} face"
    return text


def annotate(spec: NarrativeSpec, image_id: str, stats: tuple[float, float], rng: random.Random) -> dict:
    """The EmoSet-style annotation of one image: attributes only, never the relation."""
    annotation: dict = {"emotion": spec.emotion, "image_id": image_id}
    if rng.random() < NO_ATTRIBUTES_RATE:
        return annotation
    entity = GENERIC[spec.entity] if rng.random() < GENERIC_RATE else spec.entity.title()
    objects = ["Person", entity, *(p.replace("_", " ").title() for p in spec.props)]
    annotation.update(
        brightness=stats[0],
        colorfulness=stats[1],
        scene=spec.scene,
        object=list(dict.fromkeys(objects)),
    )
    if spec.expression:
        annotation["facial_expression"] = spec.expression
    annotation["human_action"] = ACTION_WORDS[spec.action]
    for key in ("brightness", "colorfulness", "scene", "object", "facial_expression", "human_action"):
        if key in annotation and rng.random() < ATTRIBUTE_DROP:
            del annotation[key]
    return annotation


def build_narrative_world(
    out: str | Path,
    images_per_emotion: int = 500,
    seed: int = 0,
    size: int = 64,
    relation_noise: float = RELATION_NOISE,
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Render the narrative world into `out` in the EmoSet layout (as `dataset.build_world` does for
    the objects world), with `truth.jsonl` holding each image's full truth, the relation included.
    Every file is written atomically and `info.json` last."""
    from .narrative_draw import render_narrative

    out = Path(out)
    taxonomy = taxonomy or Taxonomy.default()
    unknown = [e for e in taxonomy.emotions if e not in FACE]
    if unknown:
        raise CoEmoGenError(f"the narrative world has relations for the 8 Mikels emotions only, not {unknown}")
    rng = random.Random(seed)
    records: dict[str, list[list[str]]] = {name: [] for name, _ in SPLITS}
    truth = []
    with tqdm(total=images_per_emotion * taxonomy.num_emotions, desc="narrative world", unit="img") as bar:
        for emotion in taxonomy.emotions:
            for n in range(images_per_emotion):
                spec = sample_narrative(emotion, rng, relation_noise)
                image = render_narrative(spec, size)
                image_id = f"{emotion}_{n:05d}"
                image_path = f"image/{emotion}/{image_id}.jpg"
                ann_path = f"annotation/{emotion}/{image_id}.json"
                with atomic_output(out / image_path) as tmp:
                    image.save(tmp, format="JPEG", quality=95)
                write_text(out / ann_path, json.dumps(annotate(spec, image_id, image_stats(image), rng)))
                records[_pick_split(rng)].append([emotion, image_path, ann_path])
                truth.append({"image_id": image_id, "image_path": image_path, **asdict(spec)})
                bar.update()
    for split, items in records.items():
        write_text(out / f"{split}.json", json.dumps(items))
    write_text(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truth))
    rate_world(out, taxonomy)  # valence and arousal in the annotations (world/va.py)
    info = {
        "emotion": {"label2idx": {e: i for i, e in enumerate(taxonomy.emotions)}},
        "world": {
            "content": "narrative",
            "seed": seed,
            "images_per_emotion": images_per_emotion,
            "size": size,
            "relation_noise": relation_noise,
            "style": "photo",
        },
        "scene": {"label2idx": {s: i for i, s in enumerate(SCENES)}},
        "object": {"label2idx": {o: i for i, o in enumerate(ENTITIES + PROPS)}},
        "relation": {"label2idx": {r.name: i for i, r in enumerate(RELATIONS)}},
    }
    write_text(out / "info.json", json.dumps(info, indent=1))
    return out


def neutral_narrative_specs(n: int, seed: int) -> Iterator[NarrativeSpec]:
    """Narrative scenes with no emotion behind them (the pocket models' corpus): relation, scene,
    props, face and lighting each drawn uniformly and independently."""
    rng = random.Random(seed)
    for _ in range(n):
        relation = rng.choice(RELATIONS)
        props = list(dict.fromkeys(rng.choice(PROPS) for _ in range(rng.choice([0, 1, 1, 2]))))
        expression = rng.choice(EXPRESSIONS) if rng.random() < 0.5 else None
        brightness, _ = _lighting(rng.random() < 0.5, rng)
        _, saturation = _lighting(rng.random() < 0.5, rng)
        yield NarrativeSpec(
            relation.emotion,
            relation.name,
            relation.entity,
            rng.choice(SCENES),
            [relation.entity, *props],
            expression,
            relation.action,
            brightness,
            saturation,
            rng.randrange(2**31),
            rng.random() < 0.5,
        )


def write_narrative_corpus(out: str | Path, n: int = 8000, seed: int = 1, size: int = 64) -> Path:
    """The neutral narrative corpus: images plus `captions.jsonl` (file, caption)."""
    from .narrative_draw import render_narrative

    out = Path(out)
    lines = []
    for i, spec in enumerate(tqdm(neutral_narrative_specs(n, seed), total=n, desc="corpus", unit="img")):
        name = f"images/{i:06d}.png"
        with atomic_output(out / name) as tmp:
            render_narrative(spec, size).save(tmp, format="PNG")
        lines.append(json.dumps({"file": name, "caption": describe_narrative(spec)}) + "\n")
    write_text(out / "captions.jsonl", "".join(lines))
    return out


def read_narrative_truth(root: str | Path) -> dict[str, NarrativeSpec]:
    """image_path (relative to the world root) -> the narrative scene rendered there."""
    fields = NarrativeSpec.__dataclass_fields__
    truth = {}
    for line in (Path(root) / "truth.jsonl").read_text().splitlines():
        item = json.loads(line)
        truth[item["image_path"]] = NarrativeSpec(**{k: item[k] for k in fields})
    return truth
