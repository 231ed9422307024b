"""The README's image: the shipped run's images, one row per emotion (seed 0, 6 per emotion),
labelled, upscaled 2x with nearest-neighbour so the pocket model's 64 px stay sharp.

Usage: python scripts/readme_grid.py docs/assets/emotions.png
"""

import sys

from PIL import Image, ImageDraw

from coemogen import CoEmoGenPipeline
from coemogen.io import atomic_output

PER_ROW, SCALE, LABEL = 6, 2, 110


def main() -> None:
    pipe = CoEmoGenPipeline.from_pretrained(device="cpu")
    emotions = pipe.model.taxonomy.emotions
    rows = [pipe(e, num_images=PER_ROW, seed=0).images for e in emotions]
    w, h = rows[0][0].size
    grid = Image.new("RGB", (LABEL + PER_ROW * w * SCALE, len(rows) * h * SCALE), "white")
    draw = ImageDraw.Draw(grid)
    for r, (emotion, images) in enumerate(zip(emotions, rows)):
        draw.text((8, r * h * SCALE + h * SCALE // 2 - 6), emotion, fill="black")
        for c, im in enumerate(images):
            grid.paste(im.resize((w * SCALE, h * SCALE), Image.NEAREST), (LABEL + c * w * SCALE, r * h * SCALE))
    with atomic_output(sys.argv[1]) as tmp:
        grid.save(tmp, format="PNG")


if __name__ == "__main__":
    main()
