"""Drawing the synthetic world: one registered drawing function per scene and per object, and `render`.

`scenes.py` says what a world image contains (the vocabulary and `SceneSpec`); this module says how
each name looks. Scene painters register with `@scene(name)` into `SCENE_PAINTERS`, object painters
with `@object_(name)` into `OBJECT_PAINTERS`; a name without a painter is an error, never a blank.

Every drawing call and random draw happens in a fixed order, so the same spec always gives the same
pixels (the world's datasets, the judges and the shipped models all depend on that).
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image, ImageDraw

from .scenes import OBJECT_COLOR, OBJECTS, SCENE_HUE, SCENES, SceneSpec

Color = tuple[int, int, int]
DARK: Color = (20, 20, 20)


class Backdrop(NamedTuple):
    """What a scene painter draws with: canvas size, the scene's hue, brightness and saturation,
    the horizon's height and the layout's random stream."""

    s: int
    h: float
    v: float
    sat: float
    horizon: int
    rng: random.Random


ScenePainter = Callable[[ImageDraw.ImageDraw, Backdrop], None]
# (draw, cx, cy, r, colour, brightness): `colour` is the object's identity colour under the scene's
# lighting; `brightness` shades any further colours the painter uses.
ObjectPainter = Callable[[ImageDraw.ImageDraw, float, float, float, Color, float], None]


@dataclass
class ScenePainters:
    """A scene's drawing functions: scenery behind the ground (hills, buildings) and over it (rain, grass)."""

    behind_ground: ScenePainter | None = None
    over_ground: ScenePainter | None = None


SCENE_PAINTERS: dict[str, ScenePainters] = {}
OBJECT_PAINTERS: dict[str, ObjectPainter] = {}


def scene(*names: str, over_ground: bool = False) -> Callable[[ScenePainter], ScenePainter]:
    """Register the decorated function as the scenery of each scene in `names`
    (drawn before the ground, or after it with `over_ground=True`)."""
    layer = "over_ground" if over_ground else "behind_ground"

    def register(painter: ScenePainter) -> ScenePainter:
        for name in names:
            painters = SCENE_PAINTERS.setdefault(name, ScenePainters())
            if getattr(painters, layer) is not None:
                raise ValueError(f"scene '{name}' already has a {layer.replace('_', ' ')} painter")
            setattr(painters, layer, painter)
        return painter

    return register


def object_(name: str) -> Callable[[ObjectPainter], ObjectPainter]:
    """Register the decorated function as the drawing of object `name`."""

    def register(painter: ObjectPainter) -> ObjectPainter:
        if name in OBJECT_PAINTERS:
            raise ValueError(f"object '{name}' already has a painter")
        OBJECT_PAINTERS[name] = painter
        return painter

    return register


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(color: Color, brightness: float) -> Color:
    # Objects keep their identity colour but follow the scene's lighting a little.
    k = 0.55 + 0.6 * brightness
    return tuple(max(0, min(255, int(c * k))) for c in color)  # type: ignore[return-value]


def _painters(name: str, registry: dict, kind: str, known: list[str]):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"no drawing function for {kind} '{name}'; known {kind}s: {', '.join(known)}") from None


# --- Scenes ------------------------------------------------------------------------------------


@scene("mountain")
def _mountain(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, _ = b
    for x0 in (-0.2, 0.25):
        d.polygon(
            [(s * x0, horizon), (s * (x0 + 0.45), s * 0.15), (s * (x0 + 0.9), horizon)],
            fill=_hsv(h, sat * 0.5, v * 0.6),
        )
    d.polygon([(s * 0.33, s * 0.3), (s * 0.45, s * 0.15), (s * 0.57, s * 0.3)], fill=_hsv(0, 0, min(1, v + 0.2)))


@scene("starry_sky")
def _starry_sky(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, rng = b
    d.rectangle([0, 0, s, s], fill=_hsv(h, sat, v * 0.45))
    for _ in range(14):
        x, y = rng.uniform(0, s), rng.uniform(0, horizon)
        d.point([(x, y)], fill=(255, 255, 230))


@scene("circus")
def _circus(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, sat, horizon, _ = b
    for i in range(6):
        d.polygon(
            [(s / 2, s * 0.05), (i * s / 6, horizon), ((i + 1) * s / 6, horizon)],
            fill=_hsv(0.0 if i % 2 else 0.15, 0.3 + sat * 0.7, v),
        )


@scene("playground")
def _playground(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, _ = b
    d.line([(s * 0.1, s * 0.2), (s * 0.9, s * 0.2)], fill=_hsv(h, sat, v * 0.5), width=2)
    d.line([(s * 0.15, s * 0.2), (s * 0.1, horizon)], fill=_hsv(h, sat, v * 0.5), width=2)
    d.line([(s * 0.85, s * 0.2), (s * 0.9, horizon)], fill=_hsv(h, sat, v * 0.5), width=2)


@scene("beach")
def _beach(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, sat, horizon, _ = b
    d.rectangle([0, horizon - s * 0.12, s, horizon], fill=_hsv(0.55, sat, v * 0.9))


@scene("stadium")
def _stadium(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, _, _ = b
    for i in range(4):
        y = s * (0.1 + i * 0.1)
        d.rectangle([0, y, s, y + s * 0.05], fill=_hsv(h + 0.5, sat * 0.6, v * 0.8))


@scene("concert")
def _concert(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, _ = b
    for x in (0.2, 0.5, 0.8):
        d.polygon(
            [(s * x, 0), (s * (x - 0.12), horizon), (s * (x + 0.12), horizon)],
            fill=_hsv(h + x, sat * 0.5, min(1, v + 0.25)),
        )


@scene("street", "rainy_street")
def _buildings(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, _ = b
    for i, w in enumerate((0.2, 0.15, 0.25, 0.18)):
        x0 = s * sum((0.2, 0.15, 0.25, 0.18)[:i]) * 1.2
        d.rectangle([x0, s * (0.2 + 0.08 * (i % 2)), x0 + s * w, horizon], fill=_hsv(h, sat * 0.3, v * 0.55))


@scene("rainy_street", over_ground=True)
def _rain(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, rng = b.s, b.rng
    for _ in range(25):
        x, y = rng.uniform(0, s), rng.uniform(0, s)
        d.line([(x, y), (x - 1.5, y + 5)], fill=(170, 180, 200))


@scene("kitchen")
def _kitchen(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, horizon, _ = b
    for i in range(0, s, max(4, s // 8)):
        d.line([(i, 0), (i, horizon)], fill=_hsv(h, sat * 0.4, v * 0.8))
        d.line([(0, i * 0.62), (s, i * 0.62)], fill=_hsv(h, sat * 0.4, v * 0.8))


@scene("swamp")
def _swamp(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    # These arcs lie below the horizon and the ground is drawn over them, so swamps have always shown
    # plain sky and ground; moving them over the ground would change every world already built.
    s, _, v, sat, horizon, _ = b
    for i in range(5):
        y = horizon + i * s * 0.07
        d.arc([-s * 0.1 + i * 3, y - 4, s * 1.1, y + 4], 0, 180, fill=_hsv(0.25, sat, v * 0.5))


@scene("dump")
def _dump(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, sat, horizon, _ = b
    for x in (0.1, 0.45, 0.75):
        d.pieslice(
            [s * (x - 0.15), horizon - s * 0.2, s * (x + 0.2), horizon + s * 0.2],
            180,
            360,
            fill=_hsv(0.1, sat * 0.5, v * 0.5),
        )


@scene("forest")
def _forest(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, sat, horizon, _ = b
    for x in (0.05, 0.3, 0.55, 0.8):
        d.rectangle([s * x, s * 0.1, s * (x + 0.06), horizon], fill=_hsv(0.08, 0.5, v * 0.4))
        d.ellipse([s * (x - 0.08), s * 0.02, s * (x + 0.14), s * 0.28], fill=_hsv(0.35, sat, v * 0.45))


@scene("cave")
def _cave(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, h, v, sat, _, _ = b
    d.rectangle([0, 0, s, s], fill=_hsv(h, sat * 0.5, v * 0.4))
    d.ellipse([s * 0.15, s * 0.15, s * 0.85, s * 1.05], fill=_hsv(h, sat * 0.3, v * 0.15))


@scene("cemetery")
def _cemetery(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, _, horizon, _ = b
    for x in (0.1, 0.7):
        d.line([(s * x, horizon - 8), (s * x, horizon)], fill=_hsv(0, 0, v * 0.6), width=2)
        d.line([(s * x - 3, horizon - 6), (s * x + 3, horizon - 6)], fill=_hsv(0, 0, v * 0.6), width=2)


@scene("meadow", over_ground=True)
def _grass(d: ImageDraw.ImageDraw, b: Backdrop) -> None:
    s, _, v, _, horizon, rng = b
    for _ in range(10):
        x, y = rng.uniform(0, s), rng.uniform(horizon, s)
        d.line([(x, y), (x, y - 3)], fill=_hsv(0.3, 0.9, v * 0.5))


def draw_background(d: ImageDraw.ImageDraw, spec: SceneSpec, s: int, rng: random.Random) -> None:
    """Sky, the scene's scenery behind the ground, the ground, then scenery over the ground."""
    painters = _painters(spec.scene, SCENE_PAINTERS, "scene", SCENES)
    h, v, sat = SCENE_HUE[spec.scene], spec.brightness, spec.saturation
    sky, ground = _hsv(h, sat * 0.7, v), _hsv(h + 0.05, sat, v * 0.75)
    d.rectangle([0, 0, s, s], fill=sky)
    backdrop = Backdrop(s, h, v, sat, int(s * 0.62), rng)
    if painters.behind_ground is not None:
        painters.behind_ground(d, backdrop)
    d.rectangle([0, backdrop.horizon, s, s], fill=ground)
    if painters.over_ground is not None:
        painters.over_ground(d, backdrop)


# --- Objects -----------------------------------------------------------------------------------


@object_("balloon")
def _balloon(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r * 0.7, cy - r, cx + r * 0.7, cy + r * 0.6], fill=c)
    d.line([(cx, cy + r * 0.6), (cx, cy + r * 1.5)], fill=DARK)


@object_("cake")
def _cake(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.rectangle([cx - r, cy - r * 0.3, cx + r, cy + r * 0.7], fill=c)
    d.rectangle([cx - r, cy - r * 0.45, cx + r, cy - r * 0.2], fill=(255, 240, 245))
    for k in (-0.5, 0, 0.5):
        d.line([(cx + k * r, cy - r * 0.45), (cx + k * r, cy - r)], fill=(255, 60, 60), width=1)


@object_("ball")
def _ball(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=c, outline=DARK)
    d.line([(cx - r * 0.8, cy), (cx + r * 0.8, cy)], fill=DARK)


@object_("star")
def _star(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    pts = [
        (
            cx + r * (1 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5),
            cy - r * (1 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5),
        )
        for k in range(10)
    ]
    d.polygon(pts, fill=c)


@object_("moon")
def _moon(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    d.ellipse([cx - r * 0.4, cy - r * 1.1, cx + r * 1.4, cy + r * 0.7], fill=_shade((40, 40, 80), v))


@object_("rainbow")
def _rainbow(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    for i, col in enumerate([(230, 40, 40), (250, 160, 0), (250, 240, 0), (40, 200, 60), (40, 90, 230)]):
        rr = r * 1.4 - i * r * 0.18
        d.arc([cx - rr, cy - rr, cx + rr, cy + rr], 180, 360, fill=_shade(col, v), width=2)


@object_("flower")
def _flower(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    for k in range(5):
        a = k * 2 * math.pi / 5
        px, py = cx + r * 0.5 * math.cos(a), cy + r * 0.5 * math.sin(a)
        d.ellipse([px - r * 0.35, py - r * 0.35, px + r * 0.35, py + r * 0.35], fill=c)
    d.ellipse([cx - r * 0.25, cy - r * 0.25, cx + r * 0.25, cy + r * 0.25], fill=(255, 220, 0))


@object_("sun")
def _sun(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    for k in range(8):
        a = k * math.pi / 4
        d.line([(cx, cy), (cx + r * 1.2 * math.cos(a), cy + r * 1.2 * math.sin(a))], fill=c, width=1)
    d.ellipse([cx - r * 0.7, cy - r * 0.7, cx + r * 0.7, cy + r * 0.7], fill=c)


@object_("tree")
def _tree(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.rectangle([cx - r * 0.15, cy, cx + r * 0.15, cy + r], fill=(110, 70, 30))
    d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r * 0.3], fill=c)


@object_("firework")
def _firework(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
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


@object_("car")
def _car(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.rectangle([cx - r, cy - r * 0.2, cx + r, cy + r * 0.4], fill=c)
    d.rectangle([cx - r * 0.5, cy - r * 0.6, cx + r * 0.4, cy - r * 0.2], fill=c)
    for k in (-0.6, 0.6):
        d.ellipse([cx + k * r - r * 0.25, cy + r * 0.25, cx + k * r + r * 0.25, cy + r * 0.75], fill=DARK)


@object_("fire")
def _fire(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
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


@object_("broken_glass")
def _broken_glass(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
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


@object_("trash")
def _trash(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.rectangle([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r], fill=c)
    d.rectangle([cx - r * 0.75, cy - r * 0.8, cx + r * 0.75, cy - r * 0.6], fill=_shade((80, 80, 70), v))
    d.line([(cx - r * 0.2, cy - r * 0.4), (cx - r * 0.2, cy + r * 0.8)], fill=DARK)
    d.line([(cx + r * 0.2, cy - r * 0.4), (cx + r * 0.2, cy + r * 0.8)], fill=DARK)


@object_("bug")
def _bug(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r * 0.5, cy - r * 0.7, cx + r * 0.5, cy + r * 0.7], fill=c)
    for k in (-0.4, 0, 0.4):
        d.line([(cx - r, cy + k * r), (cx + r, cy + k * r)], fill=c)


@object_("worm")
def _worm(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    pts = [(cx - r + i * r / 4, cy + r * 0.3 * math.sin(i * 1.3)) for i in range(9)]
    d.line(pts, fill=c, width=3)


@object_("spider")
def _spider(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=c)
    for k in range(4):
        y = cy - r * 0.45 + k * r * 0.3
        d.line([(cx - r * 1.1, y - r * 0.3), (cx, y), (cx + r * 1.1, y - r * 0.3)], fill=c)


@object_("ghost")
def _ghost(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.pieslice([cx - r * 0.7, cy - r, cx + r * 0.7, cy + r * 0.4], 180, 360, fill=c)
    d.rectangle([cx - r * 0.7, cy - r * 0.31, cx + r * 0.7, cy + r * 0.8], fill=c)
    for k in (-0.3, 0.3):
        d.ellipse([cx + k * r - 2, cy - r * 0.5, cx + k * r + 2, cy - r * 0.2], fill=DARK)


@object_("skull")
def _skull(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.ellipse([cx - r * 0.7, cy - r * 0.8, cx + r * 0.7, cy + r * 0.5], fill=c)
    d.rectangle([cx - r * 0.4, cy + r * 0.3, cx + r * 0.4, cy + r * 0.8], fill=c)
    for k in (-0.3, 0.3):
        d.ellipse([cx + k * r - r * 0.2, cy - r * 0.3, cx + k * r + r * 0.2, cy + r * 0.1], fill=DARK)


@object_("grave")
def _grave(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.rounded_rectangle([cx - r * 0.6, cy - r, cx + r * 0.6, cy + r], radius=max(1, int(r * 0.5)), fill=c)
    d.line([(cx, cy - r * 0.6), (cx, cy + r * 0.2)], fill=DARK)
    d.line([(cx - r * 0.3, cy - r * 0.3), (cx + r * 0.3, cy - r * 0.3)], fill=DARK)


@object_("umbrella")
def _umbrella(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, c: Color, v: float) -> None:
    d.pieslice([cx - r, cy - r, cx + r, cy + r * 0.6], 180, 360, fill=c)
    d.line([(cx, cy - r * 0.2), (cx, cy + r)], fill=DARK)


def draw_object(d: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, v: float) -> None:
    """Draw object `name` centred at (cx, cy) with radius `r` under scene brightness `v`."""
    painter = _painters(name, OBJECT_PAINTERS, "object", OBJECTS)
    painter(d, cx, cy, r, _shade(OBJECT_COLOR[name], v), v)


# --- The person and the whole image --------------------------------------------------------------


def _draw_person(d: ImageDraw.ImageDraw, spec: SceneSpec, cx: float, cy: float, r: float) -> None:
    skin = _shade((240, 200, 160), spec.brightness)
    body_top, body_bottom = cy + r, cy + r * 2.6
    d.line([(cx, body_top), (cx, body_bottom)], fill=DARK, width=2)
    arms_up = spec.action in {"jumping", "cheering", "looking_up", "punching", "shouting"}
    arm_y = body_top - r * 0.8 if arms_up else body_top + r * 1.2
    d.line([(cx - r * 1.1, arm_y), (cx, body_top + r * 0.4), (cx + r * 1.1, arm_y)], fill=DARK, width=1)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=skin)
    e = spec.expression
    eye = r * (0.28 if e in {"surprise", "fear"} else 0.16)
    for k in (-0.4, 0.4):
        d.ellipse([cx + k * r - eye, cy - r * 0.3 - eye, cx + k * r + eye, cy - r * 0.3 + eye], fill=DARK)
    if e == "angry":
        d.line([(cx - r * 0.7, cy - r * 0.75), (cx - r * 0.1, cy - r * 0.45)], fill=DARK, width=1)
        d.line([(cx + r * 0.7, cy - r * 0.75), (cx + r * 0.1, cy - r * 0.45)], fill=DARK, width=1)
    box = [cx - r * 0.5, cy + r * 0.05, cx + r * 0.5, cy + r * 0.7]
    if e == "happy":
        d.arc(box, 0, 180, fill=DARK, width=1)
    elif e == "sad":
        d.arc([box[0], box[1] + r * 0.3, box[2], box[3] + r * 0.3], 180, 360, fill=DARK, width=1)
    elif e in {"surprise", "fear"}:
        d.ellipse([cx - r * 0.25, cy + r * 0.2, cx + r * 0.25, cy + r * 0.7], fill=DARK)
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
        d.line([(cx - r * 0.4, cy + r * 0.45), (cx + r * 0.4, cy + r * 0.45)], fill=DARK, width=1)
    if spec.action == "crying":
        d.line([(cx - r * 0.4, cy - r * 0.1), (cx - r * 0.4, cy + r * 0.4)], fill=(80, 140, 255), width=1)


STYLES = ("photo", "art")


def render(spec: SceneSpec, size: int = 64, style: str = "photo") -> Image.Image:
    """Render `spec` at `size` x `size`; the same spec always gives the same pixels. `style="art"`
    repaints the same scene as a painting (art.py)."""
    if style not in STYLES:
        raise ValueError(f"unknown world style '{style}'; choose one of {list(STYLES)}")
    rng = random.Random(spec.layout_seed)
    big = size * 2  # draw at twice the size and downsample for smoother shapes
    image = Image.new("RGB", (big, big))
    d = ImageDraw.Draw(image)
    draw_background(d, spec, big, rng)
    slots = [(0.22, 0.3), (0.75, 0.28), (0.5, 0.45), (0.2, 0.75), (0.8, 0.75)]
    rng.shuffle(slots)
    person_slot = None
    if spec.expression is not None:
        person_slot = (rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.45))
        slots = [sl for sl in slots if abs(sl[0] - person_slot[0]) > 0.2]
    for name, (x, y) in zip(spec.objects, slots):
        r = big * rng.uniform(0.11, 0.15)
        draw_object(d, name, big * x, big * y, r, spec.brightness)
    if person_slot is not None:
        _draw_person(d, spec, big * person_slot[0], big * person_slot[1], big * 0.11)
    if style == "art":
        from .art import paint

        image = paint(image, random.Random(f"art:{spec.layout_seed}"))
    return image.resize((size, size), Image.LANCZOS)
