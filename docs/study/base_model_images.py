"""The base model's images in the layout `coemogen generate --emotion all` writes (prompted as
stages.base_model_images prompts it): python base_model_images.py OUT"""
import sys

from coemogen.experiments.stages import base_model_images
from coemogen.pipelines.pipeline_coemogen import DEFAULT_INFERENCE_STEPS, save_images
from coemogen.taxonomy import Taxonomy

out = sys.argv[1]
for emotion in Taxonomy.default().emotions:
    save_images(base_model_images(emotion, 6, DEFAULT_INFERENCE_STEPS, 0), f"{out}/{emotion}")
