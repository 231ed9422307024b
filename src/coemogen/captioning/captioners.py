"""Captioners behind one interface: items in, one sentence (or a reason for failure) per item.

Specs for `--captioner`: `attributes`, `oracle[:hallucination_rate]`, `hf:<model id or path>`,
`openai:<base url>` (any OpenAI-compatible chat-completions server).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from .. import registry
from ..data.images import ImageLoadError, load_rgb
from ..data.readers import DatasetItem
from ..errors import CoEmoGenError

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "This image evokes {emotion}. In one sentence, describe the content of the image that evokes this emotion, "
    "covering its brightness, colorfulness, scene, objects, facial expressions and human actions where present."
)
EMPTY_CAPTION = "empty caption"
NO_PRIOR_PROMPT = (
    "In one sentence, describe the content of the image, covering its brightness, colorfulness, scene, objects, "
    "facial expressions and human actions where present."
)


def check_prompt_template(template: str | None, emotion_prior: bool = True) -> str | None:
    """A captioning prompt told the emotion must say where: at least one {emotion} placeholder."""
    if template is not None and emotion_prior and "{emotion}" not in template:
        raise CoEmoGenError(
            "the prompt template has no {emotion} placeholder, so the captioner would not be told the "
            "emotion; add one, or pass --no-emotion-prior"
        )
    return template


def build_prompt(emotion: str, template: str | None = None, emotion_prior: bool = True) -> str:
    if template is not None:
        return template.replace("{emotion}", emotion) if emotion_prior else template.replace("{emotion}", "")
    return DEFAULT_PROMPT.format(emotion=emotion) if emotion_prior else NO_PRIOR_PROMPT


@dataclass
class CaptionResult:
    """A caption, or the reason there is none. `transient`: the failure may not recur (a server or
    memory fault that outlasted its retries), so a re-run should try the item again; otherwise it
    is permanent (an unreadable image, an empty caption)."""

    caption: str | None
    error: str | None = None
    extra: dict = field(default_factory=dict)
    transient: bool = False


class Captioner:
    """Base interface: `id` names the captioner in the output; `caption` handles one batch and
    `stream` yields (item, result, seconds per item) as results become ready."""

    id: str = "captioner"
    batch_size: int = 16

    def __init__(self, prompt_template: str | None = None, emotion_prior: bool = True) -> None:
        self.prompt_template = check_prompt_template(prompt_template, emotion_prior)
        self.emotion_prior = emotion_prior

    def prompt(self, item: DatasetItem) -> str:
        return build_prompt(item.emotion, self.prompt_template, self.emotion_prior)

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads or models; the captioner is not used afterwards."""

    def __enter__(self) -> Captioner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stream(self, items: list[DatasetItem]) -> Iterator[tuple[DatasetItem, CaptionResult, float]]:
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            t0 = time.perf_counter()
            results = self.caption(batch)
            seconds = (time.perf_counter() - t0) / len(batch)
            yield from ((item, result, seconds) for item, result in zip(batch, results))


class AttributeCaptioner(Captioner):
    """EmoGen-style baseline: a sentence composed from EmoSet's word-level attributes (no model)."""

    id = "attributes"
    batch_size = 256

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        return [self._one(item) for item in items]

    def _one(self, item: DatasetItem) -> CaptionResult:
        a = item.attributes
        parts = []
        if "brightness" in a or "colorfulness" in a:
            light = "" if "brightness" not in a else ("bright" if float(a["brightness"]) >= 0.5 else "dark")
            color = "" if "colorfulness" not in a else ("colorful" if float(a["colorfulness"]) >= 0.5 else "muted")
            parts.append(f"a {' '.join(x for x in (light, color) if x)} image")
        if a.get("scene"):
            parts.append(f"of a {str(a['scene']).replace('_', ' ')}")
        if a.get("object"):
            parts.append("with " + ", ".join(str(o).lower().replace("_", " ") for o in a["object"]))
        if a.get("facial_expression"):
            parts.append(f"a {a['facial_expression']} face")
        if a.get("human_action"):
            parts.append(f"someone {str(a['human_action']).strip().replace('_', ' ')}")
        if not parts:
            return CaptionResult(None, "no attributes")
        text = " ".join(parts)
        if self.emotion_prior:
            text += f", evoking {item.emotion}"
        return CaptionResult(text)


def encode_image_data_url(path: Path, max_side: int = 1024) -> str:
    image = load_rgb(path)
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAICaptioner(Captioner):
    """Any OpenAI-compatible chat-completions server (vLLM, Ollama, SGLang, OpenAI).

    Requests run `concurrency` at a time. Every fault that may pass is retried with exponential
    backoff (honouring Retry-After), `max_retries` times: 429 and 5xx, timeouts, connection resets,
    a reply cut short or not valid JSON, an HTTP 200 carrying an error, and an empty caption. An
    item still failing on a server fault is returned as a transient failure (a re-run retries it);
    an empty caption after every retry is permanent. The API key comes from an environment
    variable and is never logged.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 96,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.url = base_url.rstrip("/") + (
            "" if base_url.rstrip("/").endswith("/chat/completions") else "/chat/completions"
        )
        self.model, self.concurrency, self.timeout = model, concurrency, timeout
        self.max_retries, self.backoff, self.max_tokens = max_retries, backoff, max_tokens
        self._api_key = os.environ.get(api_key_env)
        self.id = f"openai:{model}"
        self._pool = ThreadPoolExecutor(max_workers=concurrency)
        self._target = urllib.parse.urlsplit(self.url)
        self._local = threading.local()

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        return list(self._pool.map(self._one, items))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def stream(self, items: list[DatasetItem]) -> Iterator[tuple[DatasetItem, CaptionResult, float]]:
        """Keeps `concurrency` requests in flight and yields each reply the moment it lands, so no
        request waits for a slow neighbour and a crash loses only the requests in flight."""
        pending: dict = {}
        queue = iter(items)
        while True:
            while len(pending) < 2 * self.concurrency and (item := next(queue, None)) is not None:
                pending[self._pool.submit(self._timed, item)] = item
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                result, seconds = future.result()
                yield pending.pop(future), result, seconds

    def _timed(self, item: DatasetItem) -> tuple[CaptionResult, float]:
        t0 = time.perf_counter()
        return self._one(item), time.perf_counter() - t0

    def _one(self, item: DatasetItem) -> CaptionResult:
        try:
            url = encode_image_data_url(item.path)
        except ImageLoadError as err:
            return CaptionResult(None, str(err))
        body = json.dumps(
            {
                "model": self.model,
                "max_tokens": self.max_tokens,
                "temperature": 0.0,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": self.prompt(item)},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    }
                ],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2))
            try:
                status, retry_after, payload = self._post(body, headers)
            except (TimeoutError, ConnectionError, OSError, http.client.HTTPException) as err:
                self._local.__dict__.pop("conn", None)  # drop the broken connection; reconnect next try
                last = f"timeout or connection error ({type(err).__name__})"
                continue
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    time.sleep(min(float(retry_after), 60.0))
                continue
            if status >= 400:
                return CaptionResult(None, f"server refused the request: HTTP {status}")
            result = self._parse(payload)
            if result.caption is not None:
                return result
            last = result.error
        if last == EMPTY_CAPTION:  # the model answers, with nothing: asking again will not help
            return CaptionResult(None, EMPTY_CAPTION)
        return CaptionResult(None, f"gave up after {self.max_retries + 1} attempts: {last}", transient=True)

    def _post(self, body: bytes, headers: dict) -> tuple[int, str | None, bytes]:
        """POST on this thread's keep-alive connection (one TCP connection per worker, reused)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._target.scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._target.netloc, timeout=self.timeout)
        conn.request("POST", self._target.path or "/", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            self._local.__dict__.pop("conn", None)
        return response.status, response.getheader("Retry-After"), payload

    @staticmethod
    def _parse(payload: bytes) -> CaptionResult:
        try:
            reply = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):  # cut short or not JSON at all
            return CaptionResult(None, "malformed server response")
        if isinstance(reply, dict) and reply.get("error"):  # some servers answer 200 with an error body
            error = reply["error"]
            message = error.get("message") if isinstance(error, dict) else error
            return CaptionResult(None, f"server error in a 200 reply ({str(message)[:80]})")
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return CaptionResult(None, "malformed server response")
        if isinstance(text, list):  # some servers return content parts
            text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        text = " ".join(str(text or "").split())
        return CaptionResult(text) if text else CaptionResult(None, EMPTY_CAPTION)


class HFCaptioner(Captioner):
    """Any transformers image-text-to-text model with a chat template (Qwen2.5-VL, LLaVA, InternVL...)."""

    def __init__(
        self,
        model_name_or_path: str,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 96,
        **kw,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..models.base import _load, load_pretrained

        super().__init__(**kw)
        self.id = f"hf:{model_name_or_path}"
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # "auto": the checkpoint's own dtype on a GPU; float32 on a CPU, where half-precision kernels
        # are slow or missing whatever the config declares
        if dtype == "auto":
            torch_dtype = "auto" if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self.processor = _load(AutoProcessor.from_pretrained, model_name_or_path, "an image-text-to-text processor")
        self.processor.tokenizer.padding_side = "left"  # batched generation continues after the prompt
        self.model = (
            load_pretrained(
                AutoModelForImageTextToText.from_pretrained,
                model_name_or_path,
                "an image-text-to-text model",
                dtype=torch_dtype,
            )
            .to(self.device)
            .eval()
        )

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        images, prompts, keep = [], [], []
        results: list[CaptionResult | None] = [None] * len(items)
        for i, item in enumerate(items):
            try:
                images.append(load_rgb(item.path))
            except ImageLoadError as err:
                results[i] = CaptionResult(None, str(err))
                continue
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt(item)}]}]
            prompts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True))
            keep.append(i)
        if keep:
            for i, text in zip(keep, self._generate(images, prompts)):
                if text is None:
                    results[i] = CaptionResult(None, "out of memory for a single image", transient=True)
                    continue
                text = " ".join(text.split())
                results[i] = CaptionResult(text) if text else CaptionResult(None, EMPTY_CAPTION)
        return results  # type: ignore[return-value]

    def _generate(self, images: list, prompts: list[str]) -> list[str | None]:
        """Captions of one batch. Out of memory, the batch is retried in halves down to one image at a
        time; None for an image that does not fit even alone."""
        import torch

        try:
            return self._generate_batch(images, prompts)
        except RuntimeError as err:  # torch.OutOfMemoryError is one; MPS and CPU allocators raise plain ones
            if not isinstance(err, torch.OutOfMemoryError) and "out of memory" not in str(err).lower():
                raise
            logger.warning("out of memory captioning %d images; retrying in smaller batches", len(images))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(images) == 1:
            return [None]
        half = len(images) // 2
        return self._generate(images[:half], prompts[:half]) + self._generate(images[half:], prompts[half:])

    def _generate_batch(self, images: list, prompts: list[str]) -> list[str]:
        import torch

        inputs = self.processor(images=images, text=prompts, return_tensors="pt", padding=True).to(self.device)
        with torch.no_grad():
            generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def make_captioner(spec: str, prompt_template: str | None = None, emotion_prior: bool = True, **options) -> Captioner:
    kind, _, arg = spec.partition(":")
    common = {"prompt_template": prompt_template, "emotion_prior": emotion_prior}
    if kind == "attributes":
        return AttributeCaptioner(**common)
    registered = registry.captioners()  # schemes of clients, e.g. the synthetic world's `oracle[:rate]`
    if kind in registered:
        return registered[kind](arg, common, options)
    if kind == "openai" and arg:
        keys = ("model", "concurrency", "timeout", "max_retries", "backoff", "api_key_env")
        return OpenAICaptioner(arg, **{k: options[k] for k in keys if options.get(k) is not None}, **common)
    if kind == "hf" and arg:
        keys = ("device", "dtype", "batch_size", "max_new_tokens")
        return HFCaptioner(arg, **{k: options[k] for k in keys if options.get(k) is not None}, **common)
    schemes = ", ".join(["attributes", "hf:<model>", "openai:<base url>", *registered])
    raise CoEmoGenError(f"unknown captioner '{spec}'; use {schemes}")
