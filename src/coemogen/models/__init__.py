"""The CoEmoGen model and its parts.

- `coemogen.py`: `CoEmoGenConfig` (the model's constructor and the source of the `train` flags),
  `CoEmoGen` (mapper + visual-perception encoder for one taxonomy), `save_run` / `load_run`;
- `mapper.py`: neuro-symbolic mapper, one-hot emotion -> descriptor e_i;
- `perception.py`: visual-perception encoder, cross-attention of e_i over CLIP image tokens v_i;
- `hilora.py`: HiLoRA layers and `adapter_weights`, the explicit per-sample adapter selection;
- `conditioning.py`: the placeholder token's embedding through the frozen text encoder;
- `clusters.py`: per-emotion Gaussian (mixture) clusters of visual embeddings, sampled at inference;
- `base.py`: loading the frozen Stable Diffusion 1.x and CLIP (hub ids, local folders, presets);
- `clip.py`: CLIP features, image tokens and preprocessing in torch.
"""

from .coemogen import CoEmoGen, CoEmoGenConfig, load_run, save_run
from .hilora import HiLoRALinear, adapter_weights, inject_hilora
from .mapper import NeuroSymbolicMapper
from .perception import VisualPerceptionEncoder

__all__ = [
    "CoEmoGen",
    "CoEmoGenConfig",
    "HiLoRALinear",
    "NeuroSymbolicMapper",
    "VisualPerceptionEncoder",
    "adapter_weights",
    "inject_hilora",
    "load_run",
    "save_run",
]
