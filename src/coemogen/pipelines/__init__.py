"""Generation pipelines: `CoEmoGenPipeline` (emotion or mix -> images) and its output helpers."""

from .pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline, make_scheduler, save_images

__all__ = ["CoEmoGenOutput", "CoEmoGenPipeline", "make_scheduler", "save_images"]
