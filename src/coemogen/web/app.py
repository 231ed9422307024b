"""The Gradio app: pick an emotion (or a mix), generate, see each image's metadata, download them;
or upload an image of your own and edit it toward an emotion (the Edit tab).

The run is loaded once at start and kept in memory, one copy whatever the load; requests go through
Gradio's bounded queue, up to `limits.concurrency` of them at once, and those that share their
denoising settings are made together in one batched pass (`batching.py`: HiLoRA gates each sample
by its own emotion); edits share that one model copy (adapters per call, never merged, so they run
beside the batcher). The only file the page accepts is the image to edit, untrusted: PNG, JPEG or
WebP within the size and pixel limits (`limits.read_upload`). The model is fixed when the server
starts, and every value the page sends is checked on the server (`limits.py`); a bad request gets
its message in the page, any other failure a generic one.
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
from ..io import atomic_output
from ..models.configs import DEFAULT_EDIT_STEPS, DEFAULT_INFERENCE_STEPS, EDIT_METHODS
from ..pipelines.folders import save_images
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from ..pipelines.pipeline_edit import CoEmoGenEditPipeline
from .batching import RequestBatcher
from .limits import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TEMPLATE_CHARS,
    MIX_CHOICE,
    VA_CHOICE,
    EditRequest,
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
        self.editor = CoEmoGenEditPipeline(pipeline.base, pipeline.model, pipeline.clusters, pipeline.device)
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
        self, emotion, template, seed, steps, guidance, temperature, num_images, valence, arousal, *mix_weights
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
                va=(valence, arousal),
            )
            started = time.perf_counter()
            output, archive = self.generate(request)
        except CoEmoGenError as err:
            raise gr.Error(str(err)) from None
        what = request.emotion if request.va is None else f"valence/arousal {request.va}"
        logger.info("%d image(s) of %s in %.1f s", request.num_images, what, time.perf_counter() - started)
        gallery = [(image, _caption(meta)) for image, meta in zip(output.images, output.metadata)]
        return gallery, output.metadata, str(archive)

    def handle_edit(
        self, upload, emotion, method, strength, seed, steps, guidance, *mix_weights
    ) -> tuple[list, dict, str]:
        """The Edit button: (the source and its edit, the edit's metadata, the edited PNG)."""
        gr = import_gradio()

        try:
            request = EditRequest.from_form(
                self.limits, self.taxonomy, upload, emotion, list(mix_weights), method, strength, seed, steps, guidance
            )
            output = self.editor(**request.pipeline_kwargs(), merge_adapters=False)
        except CoEmoGenError as err:
            raise gr.Error(str(err)) from None
        self._prune_downloads()
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir()
        meta = output.metadata[0]
        path = folder / f"coemogen-edit-{meta['emotion']}-seed{request.seed}.png"
        with atomic_output(path) as tmp:
            output.images[0].save(tmp, format="PNG")
        caption = f"{_caption(meta)} · {request.method} {request.strength:g}"
        return [(request.image, "source"), (output.images[0], caption)], meta, str(path)

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
        """The page: a Generate tab and an Edit tab, controls on the left, results on the right."""
        gr = import_gradio()

        limits, emotions = self.limits, self.taxonomy.emotions
        with gr.Blocks(title=self.title, analytics_enabled=False, delete_cache=(600, DOWNLOAD_TTL_S)) as demo:
            gr.Markdown(
                f"# {self.title}\n"
                f"Images that evoke an emotion, or a mix of emotions. Up to {limits.max_images} images "
                f"and {limits.max_steps} steps per request; requests wait in a queue of {limits.max_queue}."
            )
            with gr.Tab("Generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        choices = [*emotions, MIX_CHOICE] + ([VA_CHOICE] if self.taxonomy.anchors else [])
                        emotion = gr.Dropdown(choices, value=emotions[0], label="Emotion", elem_id="emotion")
                        mix = _mix_sliders(gr, emotions)
                        with gr.Accordion(
                            "Valence / arousal: used when the emotion is 'valence / arousal'", open=False
                        ):
                            valence = gr.Slider(-3, 3, value=0, step=0.25, label="Valence", elem_id="valence")
                            arousal = gr.Slider(-3, 3, value=0, step=0.25, label="Arousal", elem_id="arousal")
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
                            1,
                            limits.max_steps,
                            value=min(DEFAULT_INFERENCE_STEPS, limits.max_steps),
                            step=1,
                            label="Steps",
                        )
                        guidance = gr.Slider(0, MAX_GUIDANCE, value=5.0, step=0.5, label="Guidance scale")
                        temperature = gr.Slider(
                            0,
                            MAX_TEMPERATURE,
                            value=self.config.cluster_temperature,
                            step=0.05,
                            label="Cluster temperature (0: the emotion's mean, 1: the fitted spread)",
                        )
                        seed = gr.Number(
                            0, label="Seed (image i uses seed + i)", precision=0, minimum=0, maximum=MAX_SEED
                        )
                        button = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Column(scale=2):
                        gallery = gr.Gallery(
                            label="Images", columns=4, format="png", elem_id="gallery", interactive=False
                        )
                        download = gr.File(label="Download: PNGs + one metadata JSON per image", elem_id="download")
                        metadata = gr.JSON(label="Metadata", open=True, elem_id="metadata")
                button.click(
                    self.handle,
                    [emotion, template, seed, steps, guidance, temperature, num_images, valence, arousal, *mix],
                    [gallery, metadata, download],
                    api_name="generate",
                    concurrency_limit=limits.concurrency,
                )
            with gr.Tab("Edit your image"):
                gr.Markdown(
                    f"Upload a PNG, JPEG or WebP image (at most {limits.max_upload_mb} MB and "
                    f"{limits.max_upload_pixels:,} pixels) and move it toward an emotion. Strength 0 keeps the "
                    "image, 1 makes a new one; inversion keeps more of its structure at the same strength."
                )
                with gr.Row():
                    with gr.Column(scale=1):
                        upload = gr.Image(
                            type="filepath", sources=["upload"], label="Your image", elem_id="edit-upload"
                        )
                        edit_emotion = gr.Dropdown(
                            [*emotions, MIX_CHOICE], value=emotions[0], label="Emotion", elem_id="edit-emotion"
                        )
                        edit_mix = _mix_sliders(gr, emotions)
                        method = gr.Radio(
                            list(EDIT_METHODS), value=EDIT_METHODS[0], label="Method", elem_id="edit-method"
                        )
                        strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength", elem_id="edit-strength")
                        edit_steps = gr.Slider(
                            1, limits.max_steps, value=min(DEFAULT_EDIT_STEPS, limits.max_steps), step=1, label="Steps"
                        )
                        edit_guidance = gr.Slider(0, MAX_GUIDANCE, value=5.0, step=0.5, label="Guidance scale")
                        edit_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                        edit_button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                    with gr.Column(scale=2):
                        before_after = gr.Gallery(
                            label="Source and edit", columns=2, format="png", elem_id="edit-gallery", interactive=False
                        )
                        edit_download = gr.File(label="Download the edit (PNG)", elem_id="edit-download")
                        edit_metadata = gr.JSON(label="Metadata", open=True, elem_id="edit-metadata")
                edit_button.click(
                    self.handle_edit,
                    [upload, edit_emotion, method, strength, edit_seed, edit_steps, edit_guidance, *edit_mix],
                    [before_after, edit_metadata, edit_download],
                    api_name="edit",
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
            max_file_size=f"{self.limits.max_upload_mb}mb",  # the Edit tab's image, checked again on the server
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


def _mix_sliders(gr, emotions: tuple[str, ...]) -> list:
    """One weight slider per emotion, read when the emotion choice is the mix."""
    with gr.Accordion("Mix: weights used when the emotion is 'mix'", open=False):
        return [gr.Slider(0, 1, value=0, step=0.05, label=e) for e in emotions]


def _caption(meta: dict) -> str:
    weights = meta["weights"]
    if "va" in meta:  # a point of the circumplex: its coordinates and its leading emotions
        leading = sorted(weights.items(), key=lambda item: -item[1])[:2]
        emotion = f"V {meta['va'][0]:+g} A {meta['va'][1]:+g} (" + ", ".join(f"{e} {w:.0%}" for e, w in leading) + ")"
    else:
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
