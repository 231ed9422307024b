"""Generation pipelines: `CoEmoGenPipeline` (emotion or mix -> images, `pipeline_coemogen.py`) and
the folders of images the commands write (`folders.py`)."""

from .folders import save_images
from .pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline, make_scheduler

__all__ = ["CoEmoGenOutput", "CoEmoGenPipeline", "make_scheduler", "save_images"]
