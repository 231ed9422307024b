"""The Gradio app: pick an emotion (or a mix), generate, see each image's metadata, download them.

The run is loaded once at start and kept in memory, one copy whatever the load; requests go through
Gradio's bounded queue, up to `limits.concurrency` of them at once, and those that share their
denoising settings are made together in one batched pass (`batching.py`: HiLoRA gates each sample
by its own emotion). The page accepts no file or path: the
model is fixed when the server starts, and every value the page sends is checked on the server
(`limits.py`); a bad request gets its message in the page, any other failure a generic one.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
import weakref
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CoEmoGenError
from ..models.configs import DEFAULT_INFERENCE_STEPS
from ..pipelines.folders import save_images
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from .batching import RequestBatcher
from .limits import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TEMPLATE_CHARS,
    MIX_CHOICE,
    GenerationRequest,
    WebLimits,
)

if TYPE_CHECKING:
    import gradio as gr

logger = logging.getLogger(__name__)
DOWNLOAD_TTL_S = 3600  # zips older than this are deleted (Gradio serves its own copy meanwhile)


class CoEmoGenWebApp:
    """The models behind the page and the request handler; `build()` makes the Gradio Blocks."""

    def __init__(self, pipeline: CoEmoGenPipeline, limits: WebLimits, title: str = "CoEmoGen") -> None:
        self.limits, self.title = limits, title
        self.taxonomy = pipeline.taxonomy
        self.config = pipeline.model.config
        self.batcher = RequestBatcher(pipeline, max_batch_images=limits.concurrency * limits.max_images)
        self.downloads = Path(tempfile.mkdtemp(prefix="coemogen-web-"))
        weakref.finalize(self, shutil.rmtree, self.downloads, ignore_errors=True)  # also at interpreter exit

    @classmethod
    def from_pretrained(
        cls, run_dir: str | Path | None = None, limits: WebLimits | None = None, device: str | None = None
    ) -> CoEmoGenWebApp:
        """Load the run (default: the shipped world run) once."""
        limits = limits or WebLimits()
        pipeline = CoEmoGenPipeline.from_pretrained(run_dir, device=device)
        name = "the shipped synthetic-world run" if run_dir is None else f"run {Path(run_dir).name}"
        return cls(pipeline, limits, title=f"CoEmoGen: {name}")

    def generate(self, request: GenerationRequest) -> tuple[CoEmoGenOutput, Path]:
        """Run one validated request (batched with concurrent ones): (CoEmoGenOutput, zip of PNGs +
        metadata JSON)."""
        output = self.batcher.generate(request)
        return output, self._zip(output, request)

    def handle(
        self, emotion, template, seed, steps, guidance, temperature, num_images, *mix_weights
    ) -> tuple[list, list[dict], str]:
        """The Generate button: form values -> (gallery, metadata, download); errors as page messages."""
        gr = import_gradio()

        try:
            request = GenerationRequest.from_form(
                self.limits,
                self.taxonomy,
                emotion,
                list(mix_weights),
                template,
                seed,
                steps,
                guidance,
                temperature,
                num_images,
            )
            started = time.perf_counter()
            output, archive = self.generate(request)
        except CoEmoGenError as err:
            raise gr.Error(str(err)) from None
        logger.info("%d image(s) of %s in %.1f s", request.num_images, request.emotion, time.perf_counter() - started)
        gallery = [(image, _caption(meta)) for image, meta in zip(output.images, output.metadata)]
        return gallery, output.metadata, str(archive)

    def _zip(self, output: CoEmoGenOutput, request: GenerationRequest) -> Path:
        self._prune_downloads()
        folder = self.downloads / uuid.uuid4().hex
        save_images(output, folder / "images")
        archive = folder / f"coemogen-seed{request.seed}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted((folder / "images").iterdir()):
                zf.write(path, path.name)
        shutil.rmtree(folder / "images")
        return archive

    def _prune_downloads(self) -> None:
        cutoff = time.time() - DOWNLOAD_TTL_S
        for folder in self.downloads.iterdir():
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def build(self) -> gr.Blocks:
        """The page: controls on the left, gallery, metadata and download on the right."""
        gr = import_gradio()

        limits, emotions = self.limits, self.taxonomy.emotions
        with gr.Blocks(title=self.title, analytics_enabled=False, delete_cache=(600, DOWNLOAD_TTL_S)) as demo:
            gr.Markdown(
                f"# {self.title}\n"
                f"Images that evoke an emotion, or a mix of emotions. Up to {limits.max_images} images "
                f"and {limits.max_steps} steps per request; requests wait in a queue of {limits.max_queue}."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    emotion = gr.Dropdown(
                        [*emotions, MIX_CHOICE], value=emotions[0], label="Emotion", elem_id="emotion"
                    )
                    with gr.Accordion("Mix: weights used when the emotion is 'mix'", open=False):
                        mix = [gr.Slider(0, 1, value=0, step=0.05, label=e) for e in emotions]
                    template = gr.Textbox(
                        "",
                        label="Prompt template (optional)",
                        placeholder=f"e.g. a photo of {{}} bag   (the run's own: {self.config.template})",
                        max_length=MAX_TEMPLATE_CHARS,
                        elem_id="template",
                    )
                    num_images = gr.Slider(
                        1, limits.max_images, value=min(4, limits.max_images), step=1, label="Images"
                    )
                    steps = gr.Slider(
                        1, limits.max_steps, value=min(DEFAULT_INFERENCE_STEPS, limits.max_steps), step=1, label="Steps"
                    )
                    guidance = gr.Slider(0, MAX_GUIDANCE, value=5.0, step=0.5, label="Guidance scale")
                    temperature = gr.Slider(
                        0,
                        MAX_TEMPERATURE,
                        value=self.config.cluster_temperature,
                        step=0.05,
                        label="Cluster temperature (0: the emotion's mean, 1: the fitted spread)",
                    )
                    seed = gr.Number(0, label="Seed (image i uses seed + i)", precision=0, minimum=0, maximum=MAX_SEED)
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Images", columns=4, format="png", elem_id="gallery", interactive=False)
                    download = gr.File(label="Download: PNGs + one metadata JSON per image", elem_id="download")
                    metadata = gr.JSON(label="Metadata", open=True, elem_id="metadata")
            button.click(
                self.handle,
                [emotion, template, seed, steps, guidance, temperature, num_images, *mix],
                [gallery, metadata, download],
                api_name="generate",
                concurrency_limit=limits.concurrency,
            )
        demo.queue(max_size=limits.max_queue)  # waiting requests beyond max_size are refused
        return demo

    def launch(self, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True) -> gr.Blocks:
        """Serve the page on host:port (loopback unless told otherwise; port None: the first free one
        from 7860). `block=False` returns the running Blocks at once; `demo.close()` stops it."""
        gr = import_gradio()
        demo = self.build()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's start-up self-checks, one line each
        demo.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=not block,
            show_error=False,  # only CoEmoGenError messages reach the page, never a traceback
            max_file_size="1kb",  # the page uploads nothing
            # system fonts: the default theme fetches Google Fonts, which an offline page cannot reach
            theme=gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace"]),
            quiet=not block,
        )
        return demo


def import_gradio():
    try:
        import gradio
    except ImportError:
        raise CoEmoGenError('the web app needs Gradio: pip install "coemogen[web]"') from None
    return gradio


def _caption(meta: dict) -> str:
    weights = meta["weights"]
    emotion = meta["emotion"] if len(weights) == 1 else " + ".join(f"{e} {w:.0%}" for e, w in weights.items())
    return f"{emotion} · seed {meta['seed']}"


def launch(
    run_dir: str | Path | None = None,
    limits: WebLimits | None = None,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    device: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """`coemogen web`: load the run (default: the shipped world run) and serve the page."""
    import_gradio()  # fail before loading any model
    return CoEmoGenWebApp.from_pretrained(run_dir, limits, device).launch(host, port, block)
