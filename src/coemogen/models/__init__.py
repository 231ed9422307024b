"""The CoEmoGen model and its parts.

- `configs.py`: `CoEmoGenConfig`, `EmoGenConfig` (the models' constructors and the source of the
  `train` flags; no torch);
- `coemogen.py`: `CoEmoGen` (mapper + visual-perception encoder for one taxonomy), `save_run` / `load_run`;
- `mapper.py`: neuro-symbolic mapper, one-hot emotion -> descriptor e_i;
- `perception.py`: visual-perception encoder, cross-attention of e_i over CLIP image tokens v_i;
- `hilora.py`: HiLoRA layers and `adapter_weights`, the explicit per-sample adapter selection;
- `conditioning.py`: the placeholder token's embedding through the frozen text encoder;
- `clusters.py`: per-emotion Gaussian (mixture) clusters of visual embeddings, sampled at inference;
- `base.py`: loading the frozen Stable Diffusion 1.x and CLIP (hub ids, local folders, presets);
- `clip.py`: CLIP features, image tokens and preprocessing in torch.
"""

from importlib import import_module

# Imported on first use: `coemogen.models.configs` (the records the command line reads) stays
# free of torch.
_EXPORTS = {
    "CoEmoGen": ".coemogen",
    "CoEmoGenConfig": ".configs",
    "load_run": ".coemogen",
    "save_run": ".coemogen",
    "HiLoRALinear": ".hilora",
    "adapter_weights": ".hilora",
    "inject_hilora": ".hilora",
    "NeuroSymbolicMapper": ".mapper",
    "VisualPerceptionEncoder": ".perception",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
