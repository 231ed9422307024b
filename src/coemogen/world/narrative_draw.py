"""Drawing the narrative world: people, the four entities in their poses, and one painter per
relation (registered with `@relation(name)` into `RELATION_PAINTERS`; a relation without one is an
error).

A relation has to be visible at 64 px, so it is carried by coarse cues only: who stands in front of
whom and which way each one faces (the chaser behind the chased), pose (kneeling, lying still,
arms up or out, leaning in or back, looking up), relative size and distance (a giant at the horizon,
pale, against one towering over the person) and marks (motion lines behind a runner, a burst
between fighters, a green spray). The backgrounds are the objects world's scene painters and the
props its object painters, drawn small behind the actors; every random draw comes from the spec's
`layout_seed` in a fixed order, so a spec always gives the same pixels.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .narrative import RELATION, NarrativeSpec
from .renderer import DARK, Color, _shade, draw_background, draw_object

SKIN: Color = (240, 200, 160)
PERSON_SHIRT: Color = (230, 90, 40)
FIGURE_SHIRT: Color = (60, 110, 230)
TROUSERS: Color = (50, 50, 80)
CLOWN_SUIT: Color = (170, 60, 200)
GIANT: Color = (95, 90, 110)
DOG: Color = (165, 110, 55)
SPIT: Color = (120, 210, 40)

# Joint positions of each pose, in units of the body's height, x towards the facing side, y up
# from the feet: hip, neck, head centre, front knee, front foot, back knee, back foot, front hand,
# back hand.
Pose = dict[str, tuple[float, float]]
_STAND: Pose = {
    "hip": (0, 0.45), "neck": (0, 0.76), "head": (0, 0.88),
    "kf": (0.04, 0.23), "ff": (0.07, 0), "kb": (-0.04, 0.23), "fb": (-0.07, 0),
    "hf": (0.1, 0.45), "hb": (-0.1, 0.45),
}  # fmt: skip
POSES: dict[str, Pose] = {
    "stand": _STAND,
    "run": {
        "hip": (0, 0.42), "neck": (0.1, 0.74), "head": (0.15, 0.85),
        "kf": (0.18, 0.28), "ff": (0.22, 0.06), "kb": (-0.08, 0.2), "fb": (-0.24, 0.12),
        "hf": (0.28, 0.64), "hb": (-0.18, 0.5),
    },
    "kneel": {
        "hip": (-0.05, 0.3), "neck": (0.02, 0.6), "head": (0.05, 0.72),
        "kf": (0.14, 0.24), "ff": (0.15, 0), "kb": (-0.02, 0.01), "fb": (-0.22, 0),
        "hf": (0.24, 0.36), "hb": (0.14, 0.32),
    },
    "kneel_bow": {
        "hip": (-0.05, 0.3), "neck": (0.1, 0.54), "head": (0.2, 0.56),
        "kf": (0.14, 0.24), "ff": (0.15, 0), "kb": (-0.02, 0.01), "fb": (-0.22, 0),
        "hf": (0.32, 0.16), "hb": (0.24, 0.14),
    },
    "kneel_offer": {
        "hip": (-0.05, 0.3), "neck": (0.02, 0.6), "head": (0.05, 0.72),
        "kf": (0.14, 0.24), "ff": (0.15, 0), "kb": (-0.02, 0.01), "fb": (-0.22, 0),
        "hf": (0.36, 0.5), "hb": (0.14, 0.32),
    },
    "lie": {
        "hip": (0, 0.07), "neck": (0.3, 0.08), "head": (0.42, 0.1),
        "kf": (-0.2, 0.07), "ff": (-0.42, 0.04), "kb": (-0.2, 0.05), "fb": (-0.4, 0.02),
        "hf": (0.22, 0.02), "hb": (0.14, 0.16),
    },
    "arms_up": {**_STAND, "hf": (0.13, 1.02), "hb": (-0.13, 1.02)},
    "dance": {**_STAND, "hf": (0.2, 1.0), "hb": (-0.14, 0.98), "kf": (0.14, 0.3), "ff": (0.22, 0.18)},
    "fists": {**_STAND, "hf": (0.26, 0.8), "hb": (0.18, 0.72)},
    "arms_out": {**_STAND, "hf": (0.34, 0.66), "hb": (0.28, 0.58)},
    "hug": {**_STAND, "neck": (0.04, 0.76), "head": (0.07, 0.88), "hf": (0.3, 0.7), "hb": (0.24, 0.52)},
    "look_up": {**_STAND, "neck": (-0.02, 0.76), "head": (-0.04, 0.88), "hf": (0.08, 0.46), "hb": (-0.1, 0.44)},
    "lean_back": {
        **_STAND, "hip": (0, 0.45), "neck": (-0.1, 0.75), "head": (-0.15, 0.85),
        "hf": (0.16, 0.86), "hb": (0.1, 0.8),
    },
    "lean_in": {**_STAND, "neck": (0.15, 0.74), "head": (0.23, 0.82), "hf": (0.42, 0.62), "hb": (0.36, 0.55)},
    "loom": {**_STAND, "neck": (0.14, 0.76), "head": (0.22, 0.84), "hf": (0.42, 0.5), "hb": (0.34, 0.42)},
    "fall_back": {
        "hip": (0, 0.42), "neck": (-0.24, 0.68), "head": (-0.33, 0.76),
        "kf": (0.1, 0.22), "ff": (0.14, 0), "kb": (0.02, 0.2), "fb": (-0.02, 0),
        "hf": (-0.08, 0.98), "hb": (-0.38, 0.92),
    },
    "bent": {**_STAND, "neck": (0.2, 0.64), "head": (0.3, 0.62), "hf": (0.12, 0.4), "hb": (0.06, 0.38)},
    "hands_face": {**_STAND, "hf": (0.08, 0.84), "hb": (-0.06, 0.84)},
    "juggle": {**_STAND, "hf": (0.14, 0.88), "hb": (-0.1, 0.88)},
    "lift": {**_STAND, "hf": (-0.05, 1.1), "hb": (-0.14, 0.5)},
}  # fmt: skip


@dataclass
class Stage:
    """The canvas of one image: the draw handle, its size, the mirror flag and the lighting."""

    d: ImageDraw.ImageDraw
    s: int
    mirrored: bool
    v: float
    rng: random.Random
    ground: float  # feet line of the foreground, in pixels

    def x(self, share: float) -> float:
        """A horizontal position (share of the width) under the image's mirroring."""
        return self.s * (1 - share if self.mirrored else share)

    def facing(self, f: int) -> int:
        return -f if self.mirrored else f

    def col(self, c: Color) -> Color:
        return _shade(c, self.v)


def humanoid(
    st: Stage,
    x: float,
    feet: float,
    h: float,
    facing: int,
    pose: str,
    shirt: Color,
    *,
    skin: Color = SKIN,
    face: str | None = None,
    look_up: bool = False,
    closed_eyes: bool = False,
    head_scale: float = 1.0,
    trousers: Color = TROUSERS,
) -> dict[str, tuple[float, float]]:
    """Draw a person-shaped body (pixels: x the feet's centre, `feet` their line, `h` the height)
    and return the joints in pixels (for props that attach to hands or heads)."""
    d, f = st.d, st.facing(facing)
    joints = {k: (x + f * dx * h, feet - dy * h) for k, (dx, dy) in POSES[pose].items()}
    limb = max(2, round(h * 0.07))
    trousers, shirt_c, skin_c = st.col(trousers), st.col(shirt), st.col(skin)
    for knee, foot in (("kb", "fb"), ("kf", "ff")):
        d.line([joints["hip"], joints[knee], joints[foot]], fill=trousers, width=limb)
    d.line([joints["hip"], joints["neck"]], fill=shirt_c, width=max(3, round(h * 0.15)))
    shoulder = (joints["neck"][0] * 0.8 + joints["hip"][0] * 0.2, joints["neck"][1] * 0.8 + joints["hip"][1] * 0.2)
    for hand in ("hb", "hf"):
        d.line([shoulder, joints[hand]], fill=shirt_c, width=limb)
        hx, hy = joints[hand]
        d.ellipse([hx - limb * 0.7, hy - limb * 0.7, hx + limb * 0.7, hy + limb * 0.7], fill=skin_c)
    hx, hy = joints["head"]
    r = h * 0.12 * head_scale
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=skin_c, outline=DARK)
    _face(st, hx, hy, r, f, face, look_up, closed_eyes)
    return joints


def _face(st: Stage, hx: float, hy: float, r: float, f: int, face: str | None, look_up: bool, closed: bool) -> None:
    d = st.d
    ey = hy - (0.55 if look_up else 0.2) * r
    ex = hx + f * 0.45 * r
    e = max(1.0, r * (0.28 if face in {"surprise", "fear"} else 0.18))
    if closed:
        d.line([(ex - e, ey), (ex + e, ey)], fill=DARK, width=1)
    else:
        d.ellipse([ex - e, ey - e, ex + e, ey + e], fill=DARK)
    mx, my = hx + f * 0.4 * r, hy + (0.1 if look_up else 0.45) * r
    w = r * 0.35
    if face == "happy":
        d.arc([mx - w, my - w, mx + w, my + w * 0.6], 0, 180, fill=DARK, width=1)
    elif face == "sad":
        d.arc([mx - w, my, mx + w, my + w * 1.4], 180, 360, fill=DARK, width=1)
    elif face in {"surprise", "fear"}:
        d.ellipse([mx - w * 0.6, my - w * 0.4, mx + w * 0.6, my + w * 0.8], fill=DARK)
    elif face == "angry":
        d.line([(ex - e * 2, ey - e * 2.2), (ex + e * 2, ey - e * 0.8)], fill=DARK, width=1)
        d.line([(mx - w, my + w * 0.3), (mx + w, my + w * 0.3)], fill=DARK, width=1)
    elif face == "disgust":
        d.line([(mx - w, my), (mx, my + w * 0.5), (mx + w, my)], fill=(60, 130, 40), width=1)
    if face == "sad":
        d.line([(ex, ey + e), (ex, ey + r * 0.7)], fill=(80, 140, 255), width=1)


def person(st: Stage, x: float, feet: float, h: float, facing: int, pose: str, spec: NarrativeSpec, **kw):
    """The person of the relation (orange shirt) with the spec's expression."""
    return humanoid(st, x, feet, h, facing, pose, PERSON_SHIRT, face=spec.expression, **kw)


def figure(st: Stage, x: float, feet: float, h: float, facing: int, pose: str, **kw):
    """The second person (blue shirt)."""
    return humanoid(st, x, feet, h, facing, pose, FIGURE_SHIRT, **kw)


def clown(st: Stage, x: float, feet: float, h: float, facing: int, pose: str) -> dict:
    """A clown: purple suit, white face, red nose, a striped cone hat and a ruffled collar."""
    joints = humanoid(st, x, feet, h, facing, pose, CLOWN_SUIT, skin=(250, 250, 250))
    d, f = st.d, st.facing(facing)
    hx, hy = joints["head"]
    r = h * 0.12
    nose = max(1.5, r * 0.3)
    d.ellipse([hx + f * r * 0.85 - nose, hy - nose, hx + f * r * 0.85 + nose, hy + nose], fill=st.col((240, 20, 20)))
    d.polygon([(hx - r, hy - r * 0.7), (hx + r, hy - r * 0.7), (hx, hy - r * 2.6)], fill=st.col((250, 220, 30)))
    d.line([(hx - r * 0.5, hy - r * 1.4), (hx + r * 0.5, hy - r * 1.4)], fill=st.col((240, 20, 20)), width=2)
    nx, ny = joints["neck"]
    d.ellipse([nx - r * 1.1, ny - r * 0.35, nx + r * 1.1, ny + r * 0.45], fill=st.col((250, 230, 60)))
    return joints


def giant(st: Stage, x: float, feet: float, h: float, facing: int, pose: str, *, distant: bool = False) -> dict:
    """A giant: a grey, broad, faceless-eyed body; `distant` ones are pale with the sky's haze."""
    colour, skin, legs = GIANT, (150, 140, 150), (60, 60, 75)
    if distant:  # aerial perspective: far things take the sky's lightness
        colour, skin, legs = (175, 175, 195), (200, 195, 205), (150, 150, 170)
    joints = humanoid(st, x, feet, h, facing, pose, colour, skin=skin, head_scale=0.85, trousers=legs)
    hx, hy = joints["head"]
    r = h * 0.1
    f = st.facing(facing)
    st.d.ellipse([hx + f * r * 0.3 - 1, hy - r * 0.3 - 1, hx + f * r * 0.3 + 1, hy - r * 0.3 + 1], fill=(250, 220, 60))
    return joints


def dog(st: Stage, x: float, feet: float, length: float, facing: int, pose: str, *, teeth: bool = False) -> None:
    """A dog in profile facing `facing`: running (legs spread), sitting or lying still."""
    d, f = st.d, st.facing(facing)
    c, darker = st.col(DOG), st.col((110, 70, 35))
    L = length
    leg = max(2, round(L * 0.08))
    if pose == "lie":  # on its side, legs out, eyes shut
        d.ellipse([x - L * 0.4, feet - L * 0.28, x + L * 0.3, feet], fill=c)
        hx, hy = x + f * L * 0.42, feet - L * 0.12
        d.ellipse([hx - L * 0.14, hy - L * 0.12, hx + L * 0.14, hy + L * 0.12], fill=c)
        for k in (-0.25, -0.1, 0.05, 0.18):
            d.line(
                [(x + f * k * L, feet - L * 0.12), (x + f * (k - 0.08) * L, feet - L * 0.02)], fill=darker, width=leg
            )
        d.line([(hx - L * 0.05, hy - L * 0.03), (hx + L * 0.05, hy - L * 0.03)], fill=DARK, width=1)
        return
    if pose == "sit":
        body = [(x - f * L * 0.25, feet - L * 0.1), (x + f * L * 0.2, feet - L * 0.5)]
        d.line(body, fill=c, width=round(L * 0.3))
        for k in (0.14, 0.22):
            d.line([(x + f * k * L, feet - L * 0.4), (x + f * k * L, feet)], fill=darker, width=leg)
        d.ellipse([x - f * L * 0.45 - L * 0.1, feet - L * 0.2, x - f * L * 0.45 + L * 0.1, feet], fill=c)
        hx, hy = x + f * L * 0.28, feet - L * 0.68
        d.line([(x - f * L * 0.35, feet - L * 0.12), (x - f * L * 0.55, feet - L * 0.35)], fill=darker, width=leg)
    else:  # run
        d.ellipse([x - L * 0.38, feet - L * 0.62, x + L * 0.38, feet - L * 0.3], fill=c)
        for k, spread in ((-0.25, -0.18), (-0.15, 0.1), (0.18, -0.1), (0.28, 0.2)):
            d.line([(x + f * k * L, feet - L * 0.4), (x + f * (k + spread) * L, feet)], fill=darker, width=leg)
        d.line([(x - f * L * 0.36, feet - L * 0.55), (x - f * L * 0.58, feet - L * 0.62)], fill=darker, width=leg)
        hx, hy = x + f * L * 0.45, feet - L * 0.72
    d.ellipse([hx - L * 0.16, hy - L * 0.15, hx + L * 0.16, hy + L * 0.15], fill=c)
    d.polygon(
        [(hx - f * L * 0.05, hy - L * 0.1), (hx - f * L * 0.18, hy - L * 0.3), (hx - f * L * 0.2, hy - L * 0.05)],
        fill=darker,
    )
    snout = [hx + f * L * 0.1, hy - L * 0.04, hx + f * L * 0.3, hy + L * 0.1]
    d.rectangle([min(snout[0], snout[2]), snout[1], max(snout[0], snout[2]), snout[3]], fill=c)
    d.ellipse([hx + f * L * 0.02 - 1, hy - L * 0.07 - 1, hx + f * L * 0.02 + 1, hy - L * 0.07 + 1], fill=DARK)
    if teeth:  # a bared, open mouth: red with white fangs
        mx = hx + f * L * 0.28
        d.polygon([(hx + f * L * 0.1, hy + L * 0.06), (mx, hy + L * 0.02), (mx, hy + L * 0.2)], fill=(200, 20, 20))
        d.line(
            [
                (hx + f * L * 0.14, hy + L * 0.06),
                (hx + f * L * 0.18, hy + L * 0.12),
                (hx + f * L * 0.22, hy + L * 0.05),
                (hx + f * L * 0.26, hy + L * 0.12),
            ],
            fill=(255, 255, 255),
            width=1,
        )


def motion_lines(st: Stage, x: float, top: float, bottom: float, facing: int, length: float) -> None:
    """Speed lines behind a mover (on the side away from `facing`)."""
    f = st.facing(facing)
    for k in range(3):
        y = top + (bottom - top) * (k + 0.5) / 3
        st.d.line([(x - f * length * 0.2, y), (x - f * length, y)], fill=(250, 250, 250), width=2)


def burst(st: Stage, cx: float, cy: float, r: float, colour: Color = (250, 40, 30)) -> None:
    """A jagged star: an impact or a quarrel."""
    import math

    radii = [r if k % 2 == 0 else r * 0.45 for k in range(12)]
    pts = [(cx + q * math.cos(k * math.pi / 6), cy + q * math.sin(k * math.pi / 6)) for k, q in enumerate(radii)]
    st.d.polygon(pts, fill=colour)


def spray(st: Stage, start: tuple[float, float], end: tuple[float, float], n: int = 7) -> None:
    """A green stream of drops from `start` to `end` (spit, vomit)."""
    for k in range(n):
        t = (k + 1) / (n + 1)
        x = start[0] + (end[0] - start[0]) * t + st.rng.uniform(-2, 2)
        y = start[1] + (end[1] - start[1]) * t + st.rng.uniform(-2, 2)
        st.d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=SPIT)


RelationPainter = Callable[[Stage, NarrativeSpec], None]
RELATION_PAINTERS: dict[str, RelationPainter] = {}


def relation(name: str) -> Callable[[RelationPainter], RelationPainter]:
    """Register the decorated function as the drawing of relation `name`."""

    def register(painter: RelationPainter) -> RelationPainter:
        if name in RELATION_PAINTERS:
            raise ValueError(f"relation '{name}' already has a painter")
        if name not in RELATION:
            raise ValueError(f"'{name}' is not a relation of narrative.RELATIONS")
        RELATION_PAINTERS[name] = painter
        return painter

    return register


H = 0.36  # a standing person's height, as a share of the canvas
DOG_L = 0.26


@relation("dog_chases_person")
def _dog_chases(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    dog(st, st.x(0.28), g, s * DOG_L, +1, "run", teeth=True)
    motion_lines(st, st.x(0.28) - st.facing(1) * s * 0.1, g - s * 0.18, g - s * 0.06, +1, s * 0.12)
    person(st, st.x(0.68), g, s * H, +1, "run", spec)
    motion_lines(st, st.x(0.68) - st.facing(1) * s * 0.08, g - s * 0.3, g - s * 0.12, +1, s * 0.1)


@relation("person_chases_dog")
def _person_chases(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.3), g, s * H, +1, "run", spec)
    motion_lines(st, st.x(0.3) - st.facing(1) * s * 0.08, g - s * 0.3, g - s * 0.12, +1, s * 0.1)
    dog(st, st.x(0.72), g, s * DOG_L, +1, "run")
    motion_lines(st, st.x(0.72) - st.facing(1) * s * 0.1, g - s * 0.18, g - s * 0.06, +1, s * 0.12)


@relation("person_feeds_dog")
def _feeds(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    j = person(st, st.x(0.36), g, s * H, +1, "kneel_offer", spec)
    hx, hy = j["hf"]
    st.d.chord([hx - s * 0.04, hy - s * 0.02, hx + s * 0.04, hy + s * 0.04], 0, 180, fill=st.col((230, 230, 240)))
    dog(st, st.x(0.66), g, s * DOG_L, -1, "sit")


@relation("person_mourns_dog")
def _mourns_dog(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.34), g, s * H, +1, "kneel_bow", spec)
    dog(st, st.x(0.62), g, s * DOG_L, -1, "lie")


@relation("clown_juggles_for_person")
def _juggles(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.28), g, s * H, +1, "stand", spec)
    j = clown(st, st.x(0.68), g, s * 0.38, -1, "juggle")
    top = min(j["hf"][1], j["hb"][1]) - s * 0.1
    cx = (j["hf"][0] + j["hb"][0]) / 2
    for k, colour in enumerate(((240, 30, 30), (40, 200, 60), (40, 90, 240))):
        bx, by = cx + (k - 1) * s * 0.06, top - (s * 0.04 if k == 1 else 0)
        st.d.ellipse([bx - s * 0.018, by - s * 0.018, bx + s * 0.018, by + s * 0.018], fill=st.col(colour))


@relation("clown_stalks_person")
def _stalks(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.66), g, s * H, +1, "stand", spec)  # facing away, unaware
    clown(st, st.x(0.38), g, s * 0.42, +1, "lean_in")


@relation("person_shoves_clown")
def _shoves(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    j = person(st, st.x(0.36), g, s * H, +1, "arms_out", spec)
    clown(st, st.x(0.62), g, s * 0.38, -1, "fall_back")
    burst(st, j["hf"][0] + st.facing(1) * s * 0.03, j["hf"][1], s * 0.035)
    motion_lines(st, st.x(0.7), g - s * 0.32, g - s * 0.14, -1, s * 0.1)


@relation("clown_spits_on_person")
def _spits(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    jp = person(st, st.x(0.32), g, s * H, +1, "lean_back", spec)
    jc = clown(st, st.x(0.66), g, s * 0.38, -1, "lean_in")
    spray(st, jc["head"], jp["head"])


@relation("person_dances_with_figure")
def _dances(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    jp = person(st, st.x(0.4), g - s * 0.02, s * H, +1, "dance", spec)
    jf = figure(st, st.x(0.6), g - s * 0.02, s * H, -1, "dance")
    st.d.line([jp["hf"], jf["hf"]], fill=st.col(SKIN), width=2)
    for x in (0.22, 0.78):  # notes in the air
        nx, ny = st.x(x), g - s * 0.42
        st.d.ellipse([nx - 3, ny - 2, nx + 3, ny + 2], fill=DARK)
        st.d.line([(nx + 2, ny), (nx + 2, ny - 9)], fill=DARK, width=1)


@relation("person_fights_figure")
def _fights(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.34), g, s * H, +1, "fists", spec)
    figure(st, st.x(0.66), g, s * H, -1, "fists", face="angry")
    burst(st, st.x(0.5), g - s * 0.3, s * 0.05)


@relation("person_hugs_figure")
def _hugs(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    figure(st, st.x(0.56), g, s * H, -1, "hug", closed_eyes=True)
    person(st, st.x(0.45), g, s * H, +1, "hug", spec)
    hx, hy = st.x(0.5), g - s * 0.42
    heart = [(hx, hy + 4), (hx - 4, hy - 1), (hx - 2, hy - 4), (hx, hy - 2), (hx + 2, hy - 4), (hx + 4, hy - 1)]
    st.d.polygon(heart, fill=st.col((240, 60, 120)))


@relation("figure_vomits_on_person")
def _vomits(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    jp = person(st, st.x(0.32), g, s * H, +1, "lean_back", spec)
    jf = figure(st, st.x(0.64), g, s * H, -1, "bent", skin=(190, 220, 150))
    spray(st, jf["head"], (jp["hf"][0], jp["hf"][1] + s * 0.06))


@relation("person_mourns_figure")
def _mourns_figure(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    person(st, st.x(0.3), g, s * H, +1, "kneel_bow", spec)
    figure(st, st.x(0.62), g, s * H, -1, "lie", closed_eyes=True)


@relation("person_proposes_to_figure")
def _proposes(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    j = person(st, st.x(0.36), g, s * H, +1, "kneel_offer", spec)
    hx, hy = j["hf"]
    st.d.ellipse([hx - 3, hy - 7, hx + 3, hy - 1], outline=st.col((255, 215, 0)), width=2)
    figure(st, st.x(0.64), g, s * H, -1, "hands_face", face="surprise")


def _distant_giant(st: Stage) -> None:
    horizon = st.s * 0.62
    giant(st, st.x(0.66), horizon + st.s * 0.03, st.s * 0.5, -1, "stand", distant=True)


@relation("person_admires_giant")
def _admires(st: Stage, spec: NarrativeSpec) -> None:
    _distant_giant(st)
    person(st, st.x(0.26), st.ground, st.s * 0.3, +1, "look_up", spec, look_up=True)


@relation("person_bows_to_giant")
def _bows(st: Stage, spec: NarrativeSpec) -> None:
    _distant_giant(st)
    person(st, st.x(0.26), st.ground, st.s * 0.3, +1, "kneel_bow", spec)


@relation("giant_looms_over_person")
def _looms(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    giant(st, st.x(0.64), g, s * 0.86, -1, "loom")
    person(st, st.x(0.3), g, s * 0.28, +1, "look_up", spec, look_up=True)


@relation("giant_lifts_person")
def _lifts(st: Stage, spec: NarrativeSpec) -> None:
    s, g = st.s, st.ground
    j = giant(st, st.x(0.62), g, s * 0.56, -1, "lift")
    hx, hy = j["hf"]
    person(st, hx, hy, s * 0.2, +1, "arms_up", spec)
    for k in (-1, 1):  # cheering marks
        st.d.line([(hx + k * s * 0.1, hy - s * 0.2), (hx + k * s * 0.14, hy - s * 0.26)], fill=(255, 240, 60), width=2)


PROP_SLOTS = ((0.1, 0.5), (0.9, 0.5), (0.5, 0.12))


def render_narrative(spec: NarrativeSpec, size: int = 64) -> Image.Image:
    """Render `spec` at `size` x `size` (drawn at twice the size and downsampled, as the objects world)."""
    painter = RELATION_PAINTERS.get(spec.relation)
    if painter is None:
        raise ValueError(f"no drawing function for relation '{spec.relation}'")
    rng = random.Random(spec.layout_seed)
    big = size * 2
    image = Image.new("RGB", (big, big))
    d = ImageDraw.Draw(image)
    draw_background(d, spec, big, rng)  # type: ignore[arg-type]  # reads scene, brightness, saturation only
    slots = list(PROP_SLOTS)
    rng.shuffle(slots)
    for name, (x, y) in zip(spec.props, slots):
        draw_object(d, name, big * x, big * y, big * rng.uniform(0.06, 0.08), spec.brightness)
    ground = big * rng.uniform(0.9, 0.95)
    painter(Stage(d, big, spec.mirrored, spec.brightness, rng, ground), spec)
    return image.resize((size, size), Image.LANCZOS)


def relation_sheet(out: str, size: int = 64, columns: int = 6, seed: int = 0, zoom: int = 2) -> str:
    """A labelled sheet of every relation (one row each, `columns` random scenes, lighting and faces
    drawn for its emotion), written atomically as PNG; the sample grid of docs/world-narrative.md."""
    from ..io import atomic_output
    from .narrative import RELATIONS, sample_narrative

    rng = random.Random(seed)
    label_w, cell = 230, size * zoom
    sheet = Image.new("RGB", (label_w + columns * cell, len(RELATIONS) * cell), "white")
    d = ImageDraw.Draw(sheet)
    for i, r in enumerate(RELATIONS):
        d.text((4, i * cell + cell // 2 - 12), f"{r.emotion}\n{r.sentence()}", fill=(0, 0, 0))
        for j in range(columns):
            spec = sample_narrative(r.emotion, rng, relation_noise=0.0)
            spec.relation, spec.entity, spec.action = r.name, r.entity, r.action
            spec.objects = [r.entity, *spec.props]
            tile = render_narrative(spec, size).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (label_w + j * cell, i * cell))
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out


def world_sheet(root: str, out: str, per_emotion: int = 10, zoom: int = 2) -> str:
    """The first `per_emotion` images of each emotion of a built world, as they are on disk (with the
    world's relation noise), one row per emotion labelled with the relations drawn."""
    import json
    from pathlib import Path

    from ..io import atomic_output

    root_p = Path(root)
    info = json.loads((root_p / "info.json").read_text())
    emotions = list(info["emotion"]["label2idx"])
    size = info["world"]["size"] * zoom
    sheet = Image.new("RGB", (90 + per_emotion * size, len(emotions) * size), "white")
    d = ImageDraw.Draw(sheet)
    for i, emotion in enumerate(emotions):
        d.text((4, i * size + size // 2 - 6), emotion, fill=(0, 0, 0))
        for j in range(per_emotion):
            path = root_p / f"image/{emotion}/{emotion}_{j:05d}.jpg"
            tile = Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)
            sheet.paste(tile, (90 + j * size, i * size))
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
