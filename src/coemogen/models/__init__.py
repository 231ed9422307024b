"""The trainable parts of CoEmoGen: mapper, visual-perception encoder and HiLoRA."""

from .hilora import HiLoRALinear, inject_hilora
from .mapper import NeuroSymbolicMapper
from .perception import VisualPerceptionEncoder

__all__ = ["HiLoRALinear", "NeuroSymbolicMapper", "VisualPerceptionEncoder", "inject_hilora"]
