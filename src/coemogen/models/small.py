"""Small models in the Stable Diffusion and CLIP architectures, built from configs: a byte-pair
tokenizer in CLIP's format trained on a word list, a small CLIP, an SD-layout VAE, a text encoder
holding a CLIP's text tower. The synthetic world's pocket models and the test kit
(`coemogen.testing`) build on these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffusers import AutoencoderKL
    from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer


def build_tokenizer(captions: list[str], out: Path, extra: list[str]) -> CLIPTokenizer:
    """Byte-pair tokenizer in CLIP's format (vocab.json + merges.txt) trained on the corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, min_frequency=1, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    # Repeat the extra words so that every one of them becomes a single token.
    bpe.train_from_iterator(captions + [" ".join(extra)] * 50, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = {}
    for token in alphabet + [a + "</w>" for a in alphabet] + list(model["vocab"]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    for token in ("".join(m) for m in merges):
        vocab.setdefault(token, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer.save_pretrained(out)
    return tokenizer


def clip_config(
    tokenizer: CLIPTokenizer, image_size: int, width: int = 128, layers: int = 3, heads: int = 4
) -> CLIPConfig:
    """A small CLIP (ViT with 8-px patches) in the transformers CLIPModel architecture."""
    from transformers import CLIPConfig

    tower = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=heads)
    return CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **tower,
        ),
        vision_config=dict(image_size=image_size, patch_size=8, **tower),
        projection_dim=width,
    )


def make_vae(block_out_channels: tuple[int, ...], image_size: int) -> AutoencoderKL:
    """An SD-layout AutoencoderKL with 4 latent channels, downsampling 2**(len(blocks) - 1) times."""
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=block_out_channels,
        norm_num_groups=8,
        sample_size=image_size,
    )


def text_encoder_from_clip(clip: CLIPModel) -> CLIPTextModel:
    """A CLIPTextModel holding the CLIP model's text tower (as SD1.5's is CLIP ViT-L/14's)."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval()
