"""The web app under load: `coemogen web` in its own process, driven by concurrent `gradio_client` users.

1. warm-up: one small request;
2. `--rounds` rounds of `--users` concurrent users, each asking for `--images` images (default 4 x 8):
   latency per request, every request served, server RSS after each round (memory steady?);
3. a burst of max_queue + 8 requests at once: how many the bounded queue refuses, and with what message;
4. a request over the limits: the message the caller gets.

Usage: python benchmarks/web_load.py [--model RUN] [--users 4] [--images 8] [--steps 25] [--rounds 3]
           [--concurrency 4] [--out FILE.json]
Another version's server side by side: PYTHONPATH=OLD/src python benchmarks/web_load.py ... (the server
subprocess inherits it).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
from gradio_client import Client

NO_MIX = [0.0] * 8  # the mix sliders (shipped taxonomy: 8 emotions), unused for a single emotion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "coemogen.cli", "web", "--port", str(port), "--max-queue", str(args.max_queue)]
    command += ["--concurrency", str(args.concurrency)]
    server = subprocess.Popen(command + (["--model", args.model] if args.model else []))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            Client(url, verbose=False)
            return server
        except Exception:  # not listening yet
            time.sleep(1)
    server.kill()
    raise RuntimeError("the web app did not start within 5 minutes")


def request(url: str, emotion: str, images: int, steps: int, seed: int) -> float:
    """One generation through the official client; returns its latency (queue wait included)."""
    started = time.perf_counter()
    gallery, _, _ = Client(url, verbose=False).predict(
        emotion, "", seed, steps, 5.0, 0.4, images, *NO_MIX, api_name="/generate"
    )
    if len(gallery) != images:
        raise RuntimeError(f"asked for {images} images, got {len(gallery)}")
    return time.perf_counter() - started


class RssSampler:
    """Peak and last resident memory of the server process, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="run directory (default: the shipped world run)")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1, help="the server's --concurrency")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(args, port)
    mib = 2**20
    try:
        rss = RssSampler(server.pid)
        request(url, "awe", 1, 1, 0)  # warm-up
        figures = {"rss_mib_after_warmup": rss.now() / mib, "rounds": []}
        emotions = ["awe", "fear", "contentment", "sadness", "amusement", "anger", "excitement", "disgust"]
        for round_index in range(args.rounds):
            started = time.perf_counter()
            with ThreadPoolExecutor(args.users) as pool:
                latencies = list(
                    pool.map(
                        lambda u: request(url, emotions[u % len(emotions)], args.images, args.steps, 100 * u),
                        range(args.users),
                    )
                )
            wall = time.perf_counter() - started
            figures["rounds"].append(
                {
                    "latency_s": sorted(latencies),
                    "wall_s": wall,
                    "rss_mib_after": rss.now() / mib,
                    "served": len(latencies),
                }
            )
            shown = ", ".join(f"{x:.1f}" for x in sorted(latencies))
            print(f"round {round_index}: latencies {shown} s; wall {wall:.1f} s")

        # The bounded queue: a burst larger than it.
        burst = args.max_queue + 8
        client = Client(url, verbose=False)
        jobs = [client.submit("awe", "", i, 10, 5.0, 0.4, 2, *NO_MIX, api_name="/generate") for i in range(burst)]
        served, refused = 0, []
        for job in jobs:
            try:
                job.result()
                served += 1
            except Exception as err:  # gradio_client raises with the server's message
                refused.append(str(err))
        figures["burst"] = {"sent": burst, "served": served, "refused": len(refused), "messages": sorted(set(refused))}

        # Over the limits: a clear message for the caller.
        try:
            request(url, "awe", 9, 10, 0)
            figures["over_limit_message"] = None
        except Exception as err:
            figures["over_limit_message"] = str(err)
        figures["rss_mib_peak"] = rss.peak / mib
        figures["rss_mib_end"] = rss.now() / mib
        rss.stop.set()
    finally:
        server.terminate()
        server.wait(30)

    import diffusers
    import gradio
    import torch
    import transformers

    figures["machine"] = {
        "cpus": psutil.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "gradio": gradio.__version__,
    }
    figures["settings"] = vars(args)
    all_latencies = [x for r in figures["rounds"] for x in r["latency_s"]]
    print(
        f"{len(all_latencies)} requests of {args.images} images x {args.steps} steps, {args.users} concurrent users: "
        f"latency median {statistics.median(all_latencies):.1f} s, max {max(all_latencies):.1f} s"
    )
    after_rounds = ", ".join(f"{r['rss_mib_after']:.0f}" for r in figures["rounds"])
    print(
        f"server RSS (MiB): after warm-up {figures['rss_mib_after_warmup']:.0f}, after each round {after_rounds}, "
        f"peak {figures['rss_mib_peak']:.0f}"
    )
    print(f"burst of {burst}: {served} served, {len(refused)} refused: {figures['burst']['messages']}")
    print(f"over the limits: {figures['over_limit_message']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
