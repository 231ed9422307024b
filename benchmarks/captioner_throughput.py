"""openai: captioner throughput against a local chat-completions server with a fixed latency.

The bound is concurrency / latency requests per second; the printed share is what the
captioner reaches of it (target >= 90% at concurrency 32).
Usage: python benchmarks/captioner_throughput.py [--concurrency 32] [--latency 0.2] [--images 640]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from PIL import Image

from coemogen.captioning.captioners import OpenAICaptioner
from coemogen.captioning.runner import run_captioning
from coemogen.data.readers import DatasetItem
from coemogen.testing import ChatCompletionsServer


def _serve(latency: float, urls, stop) -> None:
    with ChatCompletionsServer(latency=latency) as server:
        urls.put(server.url)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--images", type=int, default=640)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for i in range(args.images):
            path = Path(tmp) / f"{i}.jpg"
            Image.new("RGB", (64, 64), (i % 256, 80, 160)).save(path)
            items.append(DatasetItem(str(i), path, "awe"))
        # The server runs in its own process, as a real inference server would: sharing this
        # process's interpreter lock would measure the test server, not the captioner.
        ctx = multiprocessing.get_context("spawn")
        urls, stop = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=_serve, args=(args.latency, urls, stop), daemon=True)
        proc.start()
        try:
            captioner = OpenAICaptioner(urls.get(timeout=60), concurrency=args.concurrency)
            t0 = time.perf_counter()
            summary = run_captioning(items, captioner, Path(tmp) / "caps.jsonl")
            seconds = time.perf_counter() - t0
        finally:
            stop.set()
            proc.join(timeout=10)
    rate = summary["written"] / seconds
    bound = args.concurrency / args.latency
    print(f"images={args.images} concurrency={args.concurrency} latency={args.latency}s")
    print(f"throughput {rate:.1f} img/s, bound {bound:.1f} img/s, share {rate / bound:.1%} (target >= 90%)")


if __name__ == "__main__":
    main()
