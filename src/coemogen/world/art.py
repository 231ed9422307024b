"""The world's art style (`coemogen world build --style art`): a rendered scene repainted as a
painting, so the photo world and the art world share their content (scenes, objects, people,
lighting) but differ in domain, as EmoSet photographs and WikiArt paintings do.

Three changes, each drawn from the image's own random stream so the same scene always gives the
same painting: an art palette (the image's tones mapped through one of a few period palettes and
blended with its own colours), brush strokes (short thick strokes in the colour under them,
following one flow direction per painting) and composition (an unpainted canvas margin and a
darkened edge).
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw, ImageFilter, ImageOps

# (shadow, mid-tone, highlight) of each palette
ART_PALETTES = {
    "impressionist": ((55, 65, 110), (165, 160, 125), (250, 238, 200)),
    "expressionist": ((70, 20, 45), (195, 90, 45), (250, 215, 95)),
    "tonalist": ((38, 44, 40), (118, 124, 98), (215, 210, 178)),
    "fauvist": ((30, 35, 125), (215, 65, 95), (250, 222, 70)),
}
CANVAS = (226, 214, 190)
PALETTE_BLEND = 0.2  # share of the palette-mapped image: enough to change domain, little enough to keep hue
STROKE = (0.008, 0.02)  # half-length of a brush stroke, as a share of the canvas


def paint(image: Image.Image, rng: random.Random) -> Image.Image:
    """Repaint a rendered scene (any size) as a painting of the same size."""
    s = image.size[0]
    shadow, mid, highlight = ART_PALETTES[rng.choice(sorted(ART_PALETTES))]
    mapped = ImageOps.colorize(ImageOps.grayscale(image), black=shadow, mid=mid, white=highlight)
    source = Image.blend(image, mapped, PALETTE_BLEND).filter(ImageFilter.SMOOTH)
    canvas = source.copy()
    d = ImageDraw.Draw(canvas)
    pixels = source.load()
    flow = rng.uniform(0, math.pi)
    width = max(2, s // 32)
    for _ in range(s * s // 10):
        x, y = rng.uniform(0, s - 1), rng.uniform(0, s - 1)
        r, g, b = pixels[int(x), int(y)]
        jitter = rng.randint(-14, 14)
        colour = (min(255, max(0, r + jitter)), min(255, max(0, g + jitter)), min(255, max(0, b + jitter)))
        angle = flow + rng.gauss(0, 0.35)
        half = s * rng.uniform(STROKE[0], STROKE[1])
        dx, dy = math.cos(angle) * half, math.sin(angle) * half
        d.line([(x - dx, y - dy), (x + dx, y + dy)], fill=colour, width=width)
    margin = round(s * rng.uniform(0.04, 0.07))
    framed = Image.new("RGB", (s, s), CANVAS)
    framed.paste(canvas.resize((s - 2 * margin, s - 2 * margin), Image.LANCZOS), (margin, margin))
    vignette = Image.radial_gradient("L").resize((s, s))  # 0 at the centre, 255 at the corners
    return Image.composite(Image.new("RGB", (s, s), (25, 20, 15)), framed, vignette.point(lambda v: int(v * 0.35)))
