"""`coemogen web`: the Gradio app on a run."""

from __future__ import annotations

import argparse


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("web", help="the Gradio web app on a run (default: the shipped synthetic-world run)")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the app to the network")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device")
    p.add_argument("--max-images", type=int, default=8, help="images per request at most")
    p.add_argument("--max-steps", type=int, default=50, help="denoising steps per request at most")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests served at once, batched into one denoising pass on the one model copy",
    )
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting at most; more are refused")
    p.add_argument("--max-upload-mb", type=int, default=10, help="the Edit tab: an uploaded image's file size at most")
    p.add_argument(
        "--max-upload-pixels", type=int, default=16_000_000, help="the Edit tab: an uploaded image's pixels at most"
    )
    p.set_defaults(func=run_web)


def run_web(a: argparse.Namespace) -> None:
    from ..web import WebLimits, launch

    limits = WebLimits(
        max_images=a.max_images,
        max_steps=a.max_steps,
        concurrency=a.concurrency,
        max_queue=a.max_queue,
        max_upload_mb=a.max_upload_mb,
        max_upload_pixels=a.max_upload_pixels,
    )
    launch(a.model, limits, a.host, a.port, a.device)
