import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from coemogen.testing import build_tiny_models, build_tiny_sdxl_models  # noqa: E402
from coemogen.world.dataset import build_world, read_truth  # noqa: E402
from coemogen.world.pocket import EXTRA_WORDS  # noqa: E402
from coemogen.world.scenes import CONTENT, OBJECTS, SCENES, describe  # noqa: E402

# The tiny models' tokenizers know the world's words: the tests train on world captions.
WORLD_WORDS = EXTRA_WORDS + SCENES + OBJECTS + list(CONTENT)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(sd_dir, clip_dir) of small models saved with save_pretrained."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny"), vocabulary=WORLD_WORDS)


@pytest.fixture(scope="session")
def tiny_sdxl_models(tmp_path_factory):
    """(sdxl_dir, clip_dir) of a tiny random SDXL (diffusers' tiny SDXL test U-Net) and its CLIP."""
    return build_tiny_sdxl_models(tmp_path_factory.mktemp("tiny-sdxl"), vocabulary=WORLD_WORDS)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A 4-images-per-emotion world at 32 px and a manifest with neutral captions."""
    root = build_world(tmp_path_factory.mktemp("world"), images_per_emotion=4, seed=3, size=32)
    lines = [
        json.dumps({"image": path, "emotion": spec.emotion, "caption": describe(spec)})
        for path, spec in read_truth(root).items()
    ]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def shipped_pipeline():
    """The shipped world run's CoEmoGenPipeline on the CPU, loaded once (export and web tests)."""
    from coemogen import CoEmoGenPipeline

    return CoEmoGenPipeline.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread for a module that generates with the pocket models: they are too small for a
    second thread to help, and one thread does not collapse when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
