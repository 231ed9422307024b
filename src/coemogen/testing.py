"""Small SD-shaped and CLIP-shaped models built from configs (tests, benchmarks, CI).

They are saved with `save_pretrained` and loaded back through `load_base_models`, the same
path a real stable-diffusion-v1-5 / clip-vit-large-patch14 checkpoint takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .models.small import build_tokenizer, clip_config, make_vae, text_encoder_from_clip

# The words the small tokenizers know as single tokens (any other word is split into pieces):
# pass the vocabulary of the captions a test trains on (the synthetic world's, say).
CAPTION_WORDS = tuple(
    "a an the of image photo picture with and person face bag in on this that evokes "
    "amusement awe contentment excitement anger disgust fear sadness".split()
)


def _tiny_clip(clip_dir: Path, image_size: int, width: int, vocabulary: Sequence[str] = CAPTION_WORDS):
    """A small CLIP whose tokenizer knows `vocabulary`, saved with its tokenizer and image processor."""
    from transformers import CLIPImageProcessor, CLIPModel

    words = list(vocabulary)
    tokenizer = build_tokenizer([" ".join(words)], clip_dir, words)
    clip = CLIPModel(clip_config(tokenizer, image_size, width=width, layers=2, heads=2))
    clip.save_pretrained(clip_dir)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(clip_dir)
    return clip, tokenizer


def build_tiny_models(
    out: str | Path,
    width: int = 32,
    image_size: int = 32,
    unet_channels: tuple[int, ...] = (32, 64),
    prediction_type: str = "epsilon",
    seed: int = 0,
    vocabulary: Sequence[str] = CAPTION_WORDS,
) -> tuple[Path, Path]:
    """Write `out/sd` (model_index.json + components) and `out/clip`, the tokenizer knowing
    `vocabulary`; return both paths."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    out = Path(out)
    torch.manual_seed(seed)
    clip, tokenizer = _tiny_clip(out / "clip", image_size, width, vocabulary)
    text_encoder = text_encoder_from_clip(clip)
    vae = make_vae((16, 32), image_size)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=width,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        clip_sample=False,
        steps_offset=1,
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(out / "sd")
    return out / "sd", out / "clip"


def build_tiny_sdxl_models(
    out: str | Path, image_size: int = 32, seed: int = 0, vocabulary: Sequence[str] = CAPTION_WORDS
) -> tuple[Path, Path]:
    """Write a tiny random SDXL (`out/sdxl`, diffusers' own tiny SDXL test U-Net: two blocks, two layers
    each, text-time added embeddings) and its CLIP (`out/clip`); return both paths. The two text
    encoders have different widths (32 and 48) so that a mix-up of e^v's parts cannot pass unseen;
    the first is the CLIP's text tower, as SDXL's first encoder is CLIP ViT-L/14's."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    out = Path(out)
    torch.manual_seed(seed)
    clip, tokenizer = _tiny_clip(out / "clip", image_size, 32, vocabulary)
    second = CLIPTextConfig(
        **{k: v for k, v in clip.config.text_config.to_dict().items() if k in ("vocab_size", "max_position_embeddings",
                                                                              "bos_token_id", "eos_token_id",
                                                                              "pad_token_id")},
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, projection_dim=40,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + second.projection_dim,
        cross_attention_dim=32 + second.hidden_size,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, timestep_spacing="leading"
    )
    StableDiffusionXLPipeline(
        vae=make_vae((16, 32), image_size),
        text_encoder=text_encoder_from_clip(clip),
        text_encoder_2=CLIPTextModelWithProjection(second).eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    ).save_pretrained(out / "sdxl")
    return out / "sdxl", out / "clip"


# The published shapes: stable-diffusion-v1-5's unet/ and vae/ config.json, openai/clip-vit-large-patch14's
# config.json (whose text tower is SD1.5's text encoder).
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
VIT_L14_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
)
VIT_L14_VISION = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="quick_gelu",
)


def build_clip_vit_l14(clip_dir: Path, seed: int = 0):
    """Random-weight CLIP ViT-L/14 (a small tokenizer on `CAPTION_WORDS`: its ids fit the
    49,408-token embedding), reused when written; returns (model, tokenizer)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    if (clip_dir / "config.json").is_file():
        return CLIPModel.from_pretrained(clip_dir), CLIPTokenizer.from_pretrained(clip_dir)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer([" ".join(CAPTION_WORDS)], clip_dir, list(CAPTION_WORDS))
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    clip = CLIPModel(CLIPConfig(text_config={**VIT_L14_TEXT, **ids}, vision_config=VIT_L14_VISION, projection_dim=768))
    clip.save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(clip_dir)
    return clip, tokenizer


def build_sd15_shaped_models(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Random-weight models in the exact SD1.5 / CLIP ViT-L/14 shapes (860M-parameter U-Net, 24-layer
    vision tower), written like `build_tiny_models`; nothing is downloaded. The tokenizer is a
    small one on `CAPTION_WORDS` (its ids fit the 49,408-token embedding). Returns (sd_dir, clip_dir); reuses them
    when already written."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    out = Path(out)
    sd_dir, clip_dir = out / "sd", out / "clip"
    if (sd_dir / "model_index.json").is_file() and (clip_dir / "config.json").is_file():
        return sd_dir, clip_dir
    clip, tokenizer = build_clip_vit_l14(clip_dir, seed)  # then the U-Net and VAE from the same random stream
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=text_encoder_from_clip(clip),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**SD15_UNET),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(sd_dir)
    return sd_dir, clip_dir


# stabilityai/stable-diffusion-xl-base-1.0's unet/config.json and text_encoder_2/config.json (OpenCLIP bigG);
# its vae/ is SD1.5's layout with scaling factor 0.13025, its text_encoder/ CLIP ViT-L/14's text tower.
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
)
SDXL_VAE = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025}
BIGG_TEXT = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)


def build_sdxl_shaped_models(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Random-weight models in the exact SDXL base 1.0 shapes (2.6B-parameter U-Net, CLIP ViT-L/14 and
    OpenCLIP bigG text encoders) and CLIP ViT-L/14, written like `build_sd15_shaped_models` (nothing is
    downloaded; about 15 GB on disk in fp32). Returns (sdxl_dir, clip_dir); reuses them when written."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    out = Path(out)
    sdxl_dir, clip_dir = out / "sdxl", out / "clip"
    if (sdxl_dir / "model_index.json").is_file() and (clip_dir / "config.json").is_file():
        return sdxl_dir, clip_dir
    clip, tokenizer = build_clip_vit_l14(clip_dir, seed)  # also SDXL's first text encoder
    torch.manual_seed(seed)
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, timestep_spacing="leading"
    )
    StableDiffusionXLPipeline(
        vae=AutoencoderKL(**SDXL_VAE),
        text_encoder=text_encoder_from_clip(clip),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**BIGG_TEXT, **ids)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(**SDXL_UNET),
        scheduler=scheduler,
    ).save_pretrained(sdxl_dir)
    return sdxl_dir, clip_dir


def build_untrained_run(sd: str | Path, clip: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A run directory with freshly initialised CoEmoGen weights for these base models and emotion
    clusters around the text encoder's token embeddings (speed and memory benchmarks at real shapes)."""
    from transformers import CLIPConfig

    from .models.base import load_base_models
    from .models.clusters import EmotionClusters
    from .models.coemogen import CoEmoGen, CoEmoGenConfig, save_run
    from .taxonomy import Taxonomy

    out = Path(out)
    if (out / "clusters.safetensors").is_file():
        return out
    base = load_base_models(str(sd), str(clip), load_clip=False)
    taxonomy = Taxonomy.default()
    config = CoEmoGenConfig(
        taxonomy=taxonomy.to_dict(),
        embed_dim=base.embed_dim,
        image_dim=CLIPConfig.from_pretrained(str(clip)).vision_config.hidden_size,
        pretrained_model_name_or_path=str(sd),
        clip_model_name_or_path=str(clip),
        resolution=base.default_resolution,
    )
    torch.manual_seed(seed)
    model = CoEmoGen(config)
    model.inject_into(base.unet)
    vocabulary = min(encoder.get_input_embeddings().num_embeddings for encoder in base.text_encoders)
    picks = torch.randint(0, vocabulary, (16 * taxonomy.num_emotions,))
    # A token's embedding in every text encoder, side by side (e^v's layout).
    tokens = torch.cat([encoder.get_input_embeddings().weight.detach()[picks] for encoder in base.text_encoders], 1)
    clusters = EmotionClusters.fit(tokens, torch.arange(len(picks)) % taxonomy.num_emotions, taxonomy.num_emotions)
    return save_run(out, model, base.unet, clusters)


class ChatCompletionsServer:
    """A local OpenAI-style chat-completions server for tests and benchmarks.

    Replies with a caption derived from the request's image, so the same image always gets the
    same caption. `latency` delays every reply. Faults, by the n-th request (0-based): `script` maps
    n to one, and with `fail_every=k` every k-th request (n = k-1, 2k-1, ...) gets the next of
    `failures` in turn. A fault is an HTTP status to fail with, or one of FAULTS: "malformed" (200,
    not JSON), "truncated" (200, a JSON reply cut short), "error-body" (200 carrying an error),
    "reset" (the connection is reset, no reply), "empty" (an empty caption) or "slow" (sleeps
    `slow_seconds`, for client timeouts).
    """

    FAULTS = ("malformed", "truncated", "error-body", "reset", "empty", "slow")

    def __init__(
        self,
        latency: float = 0.0,
        script: dict[int, object] | None = None,
        slow_seconds: float = 5.0,
        fail_every: int = 0,
        failures: tuple = (),
    ) -> None:
        import hashlib
        import json
        import socket
        import struct
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.latency, self.script, self.slow_seconds = latency, dict(script or {}), slow_seconds
        self.fail_every, self.failures = fail_every, tuple(failures)
        self.requests = 0
        self.authorizations: list[str | None] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Real inference servers (uvicorn, aiohttp) set TCP_NODELAY; without it the reply's
            # header and body segments meet the client's delayed ACK and every reply waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    n = server.requests
                    server.requests += 1
                    server.authorizations.append(self.headers.get("Authorization"))
                action = server.fault(n)
                time.sleep(server.slow_seconds if action == "slow" else server.latency)
                if isinstance(action, int):
                    return self._send(action, b'{"error": "injected"}', {"Retry-After": "0"})
                if action == "malformed":
                    return self._send(200, b"{not json")
                if action == "error-body":
                    return self._send(200, b'{"error": {"message": "model overloaded", "code": 503}}')
                if action == "reset":  # RST instead of a reply: the client sees a connection reset
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return None
                request = json.loads(body)
                url = request["messages"][0]["content"][1]["image_url"]["url"]
                text = "" if action == "empty" else f"a caption of image {hashlib.sha1(url.encode()).hexdigest()[:10]}"
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self._send(200, reply[: len(reply) // 2] if action == "truncated" else reply)

            def _send(self, code, payload, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # reset and timed-out connections are expected
                pass

        self._httpd = QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def fault(self, n: int) -> object:
        """The fault injected into request n, or None."""
        if n in self.script:
            return self.script[n]
        if self.fail_every and self.failures and n % self.fail_every == self.fail_every - 1:
            return self.failures[(n // self.fail_every) % len(self.failures)]
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatCompletionsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: {% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image> {% else %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tiny_captioner(
    out: str | Path, image_size: int = 32, seed: int = 0, vocabulary: Sequence[str] = CAPTION_WORDS
) -> Path:
    """A tiny LLaVA (CLIP vision tower + Llama) with a processor and chat template, saved with
    `save_pretrained`: it loads through AutoProcessor / AutoModelForImageTextToText exactly as
    llava-hf/llava-1.5-7b-hf or Qwen/Qwen2.5-VL-7B-Instruct would."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(out)
    torch.manual_seed(seed)
    words = list(vocabulary) + "user assistant : . , evokes describe".split()
    tokenizer = build_tokenizer([" ".join(words)], out / "tokenizer", words)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.model_max_length = 512
    patch = 8
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    ).save_pretrained(out)
    return out
