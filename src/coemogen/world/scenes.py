"""Procedural emotional scenes: the synthetic world's visual vocabulary and renderer.

The design mirrors the psychology the paper builds on: a polarity shares low-level cues
(brightness, colourfulness) while each emotion owns high-level content (scenes, objects, a
person's expression and action). Every cue is noisy, so no single one gives the emotion away.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

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
POSITIVE = ("amusement", "awe", "contentment", "excitement")

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
    extras: dict = field(default_factory=dict)


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
    positive = emotion in POSITIVE
    if rng.random() < 0.15:  # low-level cues of the other polarity now and then
        positive = not positive
    brightness = rng.uniform(0.6, 0.95) if positive else rng.uniform(0.15, 0.5)
    saturation = rng.uniform(0.55, 0.95) if positive else rng.uniform(0.05, 0.4)
    return SceneSpec(emotion, scene, objects, expression, action, brightness, saturation, rng.randrange(2**31))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(color: tuple[int, int, int], brightness: float) -> tuple[int, int, int]:
    # Objects keep their identity colour but follow the scene's lighting a little.
    k = 0.55 + 0.6 * brightness
    return tuple(max(0, min(255, int(c * k))) for c in color)  # type: ignore[return-value]


def _draw_background(d: ImageDraw.ImageDraw, spec: SceneSpec, s: int, rng: random.Random) -> None:
    h, v, sat = SCENE_HUE[spec.scene], spec.brightness, spec.saturation
    sky, ground = _hsv(h, sat * 0.7, v), _hsv(h + 0.05, sat, v * 0.75)
    d.rectangle([0, 0, s, s], fill=sky)
    horizon = int(s * 0.62)
    name = spec.scene
    if name in {"mountain"}:
        for x0 in (-0.2, 0.25):
            d.polygon(
                [(s * x0, horizon), (s * (x0 + 0.45), s * 0.15), (s * (x0 + 0.9), horizon)],
                fill=_hsv(h, sat * 0.5, v * 0.6),
            )
        d.polygon([(s * 0.33, s * 0.3), (s * 0.45, s * 0.15), (s * 0.57, s * 0.3)], fill=_hsv(0, 0, min(1, v + 0.2)))
    elif name == "starry_sky":
        d.rectangle([0, 0, s, s], fill=_hsv(h, sat, v * 0.45))
        for _ in range(14):
            x, y = rng.uniform(0, s), rng.uniform(0, horizon)
            d.point([(x, y)], fill=(255, 255, 230))
    elif name == "circus":
        for i in range(6):
            d.polygon(
                [(s / 2, s * 0.05), (i * s / 6, horizon), ((i + 1) * s / 6, horizon)],
                fill=_hsv(0.0 if i % 2 else 0.15, 0.3 + sat * 0.7, v),
            )
    elif name == "playground":
        d.line([(s * 0.1, s * 0.2), (s * 0.9, s * 0.2)], fill=_hsv(h, sat, v * 0.5), width=2)
        d.line([(s * 0.15, s * 0.2), (s * 0.1, horizon)], fill=_hsv(h, sat, v * 0.5), width=2)
        d.line([(s * 0.85, s * 0.2), (s * 0.9, horizon)], fill=_hsv(h, sat, v * 0.5), width=2)
    elif name == "beach":
        d.rectangle([0, horizon - s * 0.12, s, horizon], fill=_hsv(0.55, sat, v * 0.9))
    elif name == "stadium":
        for i in range(4):
            y = s * (0.1 + i * 0.1)
            d.rectangle([0, y, s, y + s * 0.05], fill=_hsv(h + 0.5, sat * 0.6, v * 0.8))
    elif name == "concert":
        for x in (0.2, 0.5, 0.8):
            d.polygon(
                [(s * x, 0), (s * (x - 0.12), horizon), (s * (x + 0.12), horizon)],
                fill=_hsv(h + x, sat * 0.5, min(1, v + 0.25)),
            )
    elif name in {"street", "rainy_street"}:
        for i, w in enumerate((0.2, 0.15, 0.25, 0.18)):
            x0 = s * sum((0.2, 0.15, 0.25, 0.18)[:i]) * 1.2
            d.rectangle([x0, s * (0.2 + 0.08 * (i % 2)), x0 + s * w, horizon], fill=_hsv(h, sat * 0.3, v * 0.55))
    elif name == "kitchen":
        for i in range(0, s, max(4, s // 8)):
            d.line([(i, 0), (i, horizon)], fill=_hsv(h, sat * 0.4, v * 0.8))
            d.line([(0, i * 0.62), (s, i * 0.62)], fill=_hsv(h, sat * 0.4, v * 0.8))
    elif name == "swamp":
        for i in range(5):
            y = horizon + i * s * 0.07
            d.arc([-s * 0.1 + i * 3, y - 4, s * 1.1, y + 4], 0, 180, fill=_hsv(0.25, sat, v * 0.5))
    elif name == "dump":
        for x in (0.1, 0.45, 0.75):
            d.pieslice(
                [s * (x - 0.15), horizon - s * 0.2, s * (x + 0.2), horizon + s * 0.2],
                180,
                360,
                fill=_hsv(0.1, sat * 0.5, v * 0.5),
            )
    elif name == "forest":
        for x in (0.05, 0.3, 0.55, 0.8):
            d.rectangle([s * x, s * 0.1, s * (x + 0.06), horizon], fill=_hsv(0.08, 0.5, v * 0.4))
            d.ellipse([s * (x - 0.08), s * 0.02, s * (x + 0.14), s * 0.28], fill=_hsv(0.35, sat, v * 0.45))
    elif name == "cave":
        d.rectangle([0, 0, s, s], fill=_hsv(h, sat * 0.5, v * 0.4))
        d.ellipse([s * 0.15, s * 0.15, s * 0.85, s * 1.05], fill=_hsv(h, sat * 0.3, v * 0.15))
    elif name == "cemetery":
        for x in (0.1, 0.7):
            d.line([(s * x, horizon - 8), (s * x, horizon)], fill=_hsv(0, 0, v * 0.6), width=2)
            d.line([(s * x - 3, horizon - 6), (s * x + 3, horizon - 6)], fill=_hsv(0, 0, v * 0.6), width=2)
    d.rectangle([0, horizon, s, s], fill=ground)
    if name == "rainy_street":
        for _ in range(25):
            x, y = rng.uniform(0, s), rng.uniform(0, s)
            d.line([(x, y), (x - 1.5, y + 5)], fill=(170, 180, 200))
    if name == "meadow":
        for _ in range(10):
            x, y = rng.uniform(0, s), rng.uniform(horizon, s)
            d.line([(x, y), (x, y - 3)], fill=_hsv(0.3, 0.9, v * 0.5))


def _draw_object(d: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, v: float) -> None:
    c = _shade(OBJECT_COLOR[name], v)
    dark = (20, 20, 20)
    if name == "balloon":
        d.ellipse([cx - r * 0.7, cy - r, cx + r * 0.7, cy + r * 0.6], fill=c)
        d.line([(cx, cy + r * 0.6), (cx, cy + r * 1.5)], fill=dark)
    elif name == "cake":
        d.rectangle([cx - r, cy - r * 0.3, cx + r, cy + r * 0.7], fill=c)
        d.rectangle([cx - r, cy - r * 0.45, cx + r, cy - r * 0.2], fill=(255, 240, 245))
        for k in (-0.5, 0, 0.5):
            d.line([(cx + k * r, cy - r * 0.45), (cx + k * r, cy - r)], fill=(255, 60, 60), width=1)
    elif name == "ball":
        d.ellipse([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=c, outline=dark)
        d.line([(cx - r * 0.8, cy), (cx + r * 0.8, cy)], fill=dark)
    elif name == "star":
        pts = [
            (
                cx + r * (1 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5),
                cy - r * (1 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5),
            )
            for k in range(10)
        ]
        d.polygon(pts, fill=c)
    elif name == "moon":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
        d.ellipse([cx - r * 0.4, cy - r * 1.1, cx + r * 1.4, cy + r * 0.7], fill=_shade((40, 40, 80), v))
    elif name == "rainbow":
        for i, col in enumerate([(230, 40, 40), (250, 160, 0), (250, 240, 0), (40, 200, 60), (40, 90, 230)]):
            rr = r * 1.4 - i * r * 0.18
            d.arc([cx - rr, cy - rr, cx + rr, cy + rr], 180, 360, fill=_shade(col, v), width=2)
    elif name == "flower":
        for k in range(5):
            a = k * 2 * math.pi / 5
            px, py = cx + r * 0.5 * math.cos(a), cy + r * 0.5 * math.sin(a)
            d.ellipse([px - r * 0.35, py - r * 0.35, px + r * 0.35, py + r * 0.35], fill=c)
        d.ellipse([cx - r * 0.25, cy - r * 0.25, cx + r * 0.25, cy + r * 0.25], fill=(255, 220, 0))
    elif name == "sun":
        for k in range(8):
            a = k * math.pi / 4
            d.line([(cx, cy), (cx + r * 1.2 * math.cos(a), cy + r * 1.2 * math.sin(a))], fill=c, width=1)
        d.ellipse([cx - r * 0.7, cy - r * 0.7, cx + r * 0.7, cy + r * 0.7], fill=c)
    elif name == "tree":
        d.rectangle([cx - r * 0.15, cy, cx + r * 0.15, cy + r], fill=(110, 70, 30))
        d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r * 0.3], fill=c)
    elif name == "firework":
        for k in range(12):
            a = k * math.pi / 6
            col = _shade(((255, 80, 255), (255, 240, 60), (80, 255, 255))[k % 3], v)
            d.line(
                [
                    (cx + r * 0.2 * math.cos(a), cy + r * 0.2 * math.sin(a)),
                    (cx + r * math.cos(a), cy + r * math.sin(a)),
                ],
                fill=col,
                width=1,
            )
    elif name == "car":
        d.rectangle([cx - r, cy - r * 0.2, cx + r, cy + r * 0.4], fill=c)
        d.rectangle([cx - r * 0.5, cy - r * 0.6, cx + r * 0.4, cy - r * 0.2], fill=c)
        for k in (-0.6, 0.6):
            d.ellipse([cx + k * r - r * 0.25, cy + r * 0.25, cx + k * r + r * 0.25, cy + r * 0.75], fill=dark)
    elif name == "fire":
        for k in (-0.5, 0, 0.5):
            d.polygon(
                [
                    (cx + k * r - r * 0.35, cy + r),
                    (cx + k * r, cy - r * (0.6 + 0.4 * (k == 0))),
                    (cx + k * r + r * 0.35, cy + r),
                ],
                fill=c,
            )
        d.polygon([(cx - r * 0.2, cy + r), (cx, cy), (cx + r * 0.2, cy + r)], fill=(255, 230, 0))
    elif name == "broken_glass":
        pts = [
            (cx - r, cy - r),
            (cx - r * 0.2, cy - r * 0.1),
            (cx + r, cy - r * 0.8),
            (cx + r * 0.1, cy + r * 0.2),
            (cx + r * 0.7, cy + r),
            (cx - r * 0.3, cy + r * 0.3),
            (cx - r, cy + r * 0.6),
        ]
        d.line(pts, fill=c, width=2)
    elif name == "trash":
        d.rectangle([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r], fill=c)
        d.rectangle([cx - r * 0.75, cy - r * 0.8, cx + r * 0.75, cy - r * 0.6], fill=_shade((80, 80, 70), v))
        d.line([(cx - r * 0.2, cy - r * 0.4), (cx - r * 0.2, cy + r * 0.8)], fill=dark)
        d.line([(cx + r * 0.2, cy - r * 0.4), (cx + r * 0.2, cy + r * 0.8)], fill=dark)
    elif name == "bug":
        d.ellipse([cx - r * 0.5, cy - r * 0.7, cx + r * 0.5, cy + r * 0.7], fill=c)
        for k in (-0.4, 0, 0.4):
            d.line([(cx - r, cy + k * r), (cx + r, cy + k * r)], fill=c)
    elif name == "worm":
        pts = [(cx - r + i * r / 4, cy + r * 0.3 * math.sin(i * 1.3)) for i in range(9)]
        d.line(pts, fill=c, width=3)
    elif name == "spider":
        d.ellipse([cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=c)
        for k in range(4):
            y = cy - r * 0.45 + k * r * 0.3
            d.line([(cx - r * 1.1, y - r * 0.3), (cx, y), (cx + r * 1.1, y - r * 0.3)], fill=c)
    elif name == "ghost":
        d.pieslice([cx - r * 0.7, cy - r, cx + r * 0.7, cy + r * 0.4], 180, 360, fill=c)
        d.rectangle([cx - r * 0.7, cy - r * 0.31, cx + r * 0.7, cy + r * 0.8], fill=c)
        for k in (-0.3, 0.3):
            d.ellipse([cx + k * r - 2, cy - r * 0.5, cx + k * r + 2, cy - r * 0.2], fill=dark)
    elif name == "skull":
        d.ellipse([cx - r * 0.7, cy - r * 0.8, cx + r * 0.7, cy + r * 0.5], fill=c)
        d.rectangle([cx - r * 0.4, cy + r * 0.3, cx + r * 0.4, cy + r * 0.8], fill=c)
        for k in (-0.3, 0.3):
            d.ellipse([cx + k * r - r * 0.2, cy - r * 0.3, cx + k * r + r * 0.2, cy + r * 0.1], fill=dark)
    elif name == "grave":
        d.rounded_rectangle([cx - r * 0.6, cy - r, cx + r * 0.6, cy + r], radius=max(1, int(r * 0.5)), fill=c)
        d.line([(cx, cy - r * 0.6), (cx, cy + r * 0.2)], fill=dark)
        d.line([(cx - r * 0.3, cy - r * 0.3), (cx + r * 0.3, cy - r * 0.3)], fill=dark)
    elif name == "umbrella":
        d.pieslice([cx - r, cy - r, cx + r, cy + r * 0.6], 180, 360, fill=c)
        d.line([(cx, cy - r * 0.2), (cx, cy + r)], fill=dark)


def _draw_person(d: ImageDraw.ImageDraw, spec: SceneSpec, cx: float, cy: float, r: float) -> None:
    skin, dark = _shade((240, 200, 160), spec.brightness), (20, 20, 20)
    body_top, body_bottom = cy + r, cy + r * 2.6
    d.line([(cx, body_top), (cx, body_bottom)], fill=dark, width=2)
    arms_up = spec.action in {"jumping", "cheering", "looking_up", "punching", "shouting"}
    arm_y = body_top - r * 0.8 if arms_up else body_top + r * 1.2
    d.line([(cx - r * 1.1, arm_y), (cx, body_top + r * 0.4), (cx + r * 1.1, arm_y)], fill=dark, width=1)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=skin)
    e = spec.expression
    eye = r * (0.28 if e in {"surprise", "fear"} else 0.16)
    for k in (-0.4, 0.4):
        d.ellipse([cx + k * r - eye, cy - r * 0.3 - eye, cx + k * r + eye, cy - r * 0.3 + eye], fill=dark)
    if e == "angry":
        d.line([(cx - r * 0.7, cy - r * 0.75), (cx - r * 0.1, cy - r * 0.45)], fill=dark, width=1)
        d.line([(cx + r * 0.7, cy - r * 0.75), (cx + r * 0.1, cy - r * 0.45)], fill=dark, width=1)
    box = [cx - r * 0.5, cy + r * 0.05, cx + r * 0.5, cy + r * 0.7]
    if e == "happy":
        d.arc(box, 0, 180, fill=dark, width=1)
    elif e == "sad":
        d.arc([box[0], box[1] + r * 0.3, box[2], box[3] + r * 0.3], 180, 360, fill=dark, width=1)
    elif e in {"surprise", "fear"}:
        d.ellipse([cx - r * 0.25, cy + r * 0.2, cx + r * 0.25, cy + r * 0.7], fill=dark)
    elif e == "disgust":
        d.line(
            [
                (cx - r * 0.5, cy + r * 0.5),
                (cx - r * 0.15, cy + r * 0.3),
                (cx + r * 0.15, cy + r * 0.55),
                (cx + r * 0.5, cy + r * 0.35),
            ],
            fill=(60, 120, 40),
            width=1,
        )
    else:
        d.line([(cx - r * 0.4, cy + r * 0.45), (cx + r * 0.4, cy + r * 0.45)], fill=dark, width=1)
    if spec.action == "crying":
        d.line([(cx - r * 0.4, cy - r * 0.1), (cx - r * 0.4, cy + r * 0.4)], fill=(80, 140, 255), width=1)


def render(spec: SceneSpec, size: int = 64) -> Image.Image:
    """Render `spec` at `size` x `size`; the same spec always gives the same pixels."""
    rng = random.Random(spec.layout_seed)
    big = size * 2  # draw at twice the size and downsample for smoother shapes
    image = Image.new("RGB", (big, big))
    d = ImageDraw.Draw(image)
    _draw_background(d, spec, big, rng)
    slots = [(0.22, 0.3), (0.75, 0.28), (0.5, 0.45), (0.2, 0.75), (0.8, 0.75)]
    rng.shuffle(slots)
    person_slot = None
    if spec.expression is not None:
        person_slot = (rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.45))
        slots = [sl for sl in slots if abs(sl[0] - person_slot[0]) > 0.2]
    for name, (x, y) in zip(spec.objects, slots):
        r = big * rng.uniform(0.11, 0.15)
        _draw_object(d, name, big * x, big * y, r, spec.brightness)
    if person_slot is not None:
        _draw_person(d, spec, big * person_slot[0], big * person_slot[1], big * 0.11)
    return image.resize((size, size), Image.LANCZOS)


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
