"""What a synthetic-world image contains: the visual vocabulary per emotion, `SceneSpec`, scene
sampling and the neutral descriptions. How each name is drawn lives in `renderer.py`.

The design mirrors the psychology the paper builds on: a polarity shares low-level cues
(brightness, colourfulness) while each emotion owns high-level content (scenes, objects, a
person's expression and action). Every cue is noisy, so no single one gives the emotion away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..taxonomy import Taxonomy

# Emotion -> (scenes, objects, facial expressions, human actions). Some entries are shared
# across emotions on purpose (ball, car, tree...), as in real photographs.
CONTENT: dict[str, dict[str, list[str]]] = {
    "amusement": {
        "scene": ["circus", "playground"],
        "object": ["balloon", "cake", "ball"],
        "expression": ["happy"],
        "action": ["laughing", "jumping"],
    },
    "awe": {
        "scene": ["mountain", "starry_sky"],
        "object": ["star", "moon", "rainbow"],
        "expression": ["surprise"],
        "action": ["looking_up", "hiking"],
    },
    "contentment": {
        "scene": ["meadow", "beach"],
        "object": ["flower", "sun", "tree"],
        "expression": ["happy"],
        "action": ["sitting", "reading"],
    },
    "excitement": {
        "scene": ["stadium", "concert"],
        "object": ["firework", "ball", "car"],
        "expression": ["surprise", "happy"],
        "action": ["cheering", "jumping"],
    },
    "anger": {
        "scene": ["street", "kitchen"],
        "object": ["fire", "broken_glass", "car"],
        "expression": ["angry"],
        "action": ["punching", "shouting"],
    },
    "disgust": {
        "scene": ["swamp", "dump"],
        "object": ["trash", "bug", "worm"],
        "expression": ["disgust"],
        "action": ["vomiting", "covering_nose"],
    },
    "fear": {
        "scene": ["forest", "cave"],
        "object": ["spider", "ghost", "skull"],
        "expression": ["fear"],
        "action": ["running", "hiding"],
    },
    "sadness": {
        "scene": ["cemetery", "rainy_street"],
        "object": ["grave", "umbrella", "tree"],
        "expression": ["sad"],
        "action": ["crying", "sitting"],
    },
}

SCENE_HUE = {
    "circus": 0.0,
    "playground": 0.08,
    "mountain": 0.6,
    "starry_sky": 0.68,
    "meadow": 0.3,
    "beach": 0.12,
    "stadium": 0.35,
    "concert": 0.8,
    "street": 0.58,
    "kitchen": 0.1,
    "swamp": 0.22,
    "dump": 0.14,
    "forest": 0.38,
    "cave": 0.05,
    "cemetery": 0.5,
    "rainy_street": 0.62,
}
OBJECT_COLOR = {
    "balloon": (230, 40, 40),
    "cake": (150, 90, 50),
    "ball": (250, 250, 250),
    "star": (255, 230, 60),
    "moon": (240, 240, 200),
    "rainbow": (200, 80, 200),
    "flower": (255, 120, 180),
    "sun": (255, 200, 0),
    "tree": (40, 140, 40),
    "firework": (255, 80, 255),
    "car": (40, 90, 220),
    "fire": (255, 110, 0),
    "broken_glass": (180, 220, 230),
    "trash": (110, 110, 100),
    "bug": (20, 20, 20),
    "worm": (200, 120, 120),
    "spider": (10, 10, 10),
    "ghost": (245, 245, 245),
    "skull": (225, 225, 210),
    "grave": (130, 130, 140),
    "umbrella": (30, 30, 90),
}
SCENES = sorted(SCENE_HUE)
OBJECTS = sorted(OBJECT_COLOR)
EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise"]
ACTIONS = sorted({a for c in CONTENT.values() for a in c["action"]})


@dataclass
class SceneSpec:
    """Everything needed to render (and describe) one image."""

    emotion: str
    scene: str
    objects: list[str]
    expression: str | None
    action: str | None
    brightness: float  # 0..1 target value of the background
    saturation: float  # 0..1 target colourfulness of the background
    layout_seed: int


def sample_scene(emotion: str, rng: random.Random, content_noise: float = 0.2) -> SceneSpec:
    """Draw a scene for `emotion`; `content_noise` is the chance each high-level cue is off-emotion."""
    own = CONTENT[emotion]
    scene = rng.choice(own["scene"]) if rng.random() > content_noise else rng.choice(SCENES)
    n_objects = rng.choice([1, 2, 2, 3])
    objects = []
    for _ in range(n_objects):
        pool = own["object"] if rng.random() > content_noise else OBJECTS
        objects.append(rng.choice(pool))
    objects = list(dict.fromkeys(objects))
    has_person = rng.random() < 0.6
    expression = action = None
    if has_person:
        expression = rng.choice(own["expression"]) if rng.random() > content_noise else rng.choice(EXPRESSIONS)
        action = rng.choice(own["action"]) if rng.random() > content_noise else rng.choice(ACTIONS)
    positive = Taxonomy.default().group_of(emotion) == "positive"
    if rng.random() < 0.15:  # low-level cues of the other polarity now and then
        positive = not positive
    brightness = rng.uniform(0.6, 0.95) if positive else rng.uniform(0.15, 0.5)
    saturation = rng.uniform(0.55, 0.95) if positive else rng.uniform(0.05, 0.4)
    return SceneSpec(emotion, scene, objects, expression, action, brightness, saturation, rng.randrange(2**31))


def visible_words(spec: SceneSpec) -> tuple[str, str, str]:
    """Lighting, colour and object words of a scene, shared by every caption written from it."""
    light = "bright" if spec.brightness > 0.55 else "dark"
    color = "colorful" if spec.saturation > 0.5 else "muted"
    return light, color, " and ".join(o.replace("_", " ") for o in spec.objects)


def describe(spec: SceneSpec) -> str:
    """A neutral caption: what is visible, no emotion words (for pretraining the base models)."""
    light, color, objects = visible_words(spec)
    text = f"a {light} {color} picture of a {spec.scene.replace('_', ' ')} with {objects}"
    if spec.expression:
        text += f", a person with a {spec.expression} face {spec.action.replace('_', ' ')}"
    return text
