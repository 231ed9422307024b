"""Exports of a trained run into the formats the Stable Diffusion ecosystem loads.

An emotion's condition is a U-Net delta (its HiLoRA adapter plus its group's) and an input-token
embedding; both travel without approximation: the delta as a plain LoRA (`lora.py`: kohya keys for
A1111, ComfyUI, InvokeAI and diffusers; peft keys for diffusers), the embedding as textual-inversion
files (`embeddings.py`). `exporter.py` writes one folder per emotion with its model card and usage
(`card.py`); `hub.py` uploads the folder.
"""

from .exporter import export_emotion, export_run
from .hub import push_to_hub

__all__ = ["export_emotion", "export_run", "push_to_hub"]
