"""Generate with the shipped run for fixed seeds (every emotion, a mix, a template; one torch thread)
and print a digest of each image's pixels, with whichever `coemogen` is importable: run it on a
checkout of an older commit (`PYTHONPATH=old/src`) and on this one to check that a refactor left
the images byte-identical on this machine.

Usage: python scripts/shipped_images_digest.py
"""

import hashlib

import numpy as np
import torch

import coemogen
from coemogen import CoEmoGenPipeline


def main() -> None:
    torch.set_num_threads(1)
    pipe = CoEmoGenPipeline.from_pretrained(device="cpu")
    print(coemogen.__file__)
    requests = [(e, {}) for e in pipe.model.taxonomy.emotions]
    requests += [({"fear": 0.7, "sadness": 0.3}, {}), ("awe", {"template": "{} balloon"})]
    for emotion, extra in requests:
        output = pipe(emotion, num_images=2, seed=7, num_inference_steps=8, **extra)
        pixels = np.stack([np.asarray(im) for im in output.images])
        print(emotion, extra or "", hashlib.sha256(pixels.tobytes()).hexdigest()[:16])


if __name__ == "__main__":
    main()
