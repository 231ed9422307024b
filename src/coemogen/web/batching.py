"""One loaded model, many requests: concurrent web requests that share their denoising settings are
made in one batched pipeline call.

HiLoRA gates every sample by its own emotion (or mix), so requests of different emotions batch
freely; what they must share is what the whole denoising pass uses: steps, guidance, the template
and the cluster temperature. Each request keeps its own images: image i of a request is drawn from
seed + i exactly as alone (the pipeline's `seeds`); the pixels can differ from an unbatched call by
float rounding, since a CPU's rounding can depend on the batch. The worker is one thread, so the
pipeline is never called by two threads at once here; its adapters stay per call (not merged), and
other threads may still call it safely.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from .limits import GenerationRequest


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        """What the requests of one batched call must share."""
        r = self.request
        # emotion specs and valence/arousal points go through different arguments of the pipeline
        return (r.template, r.num_inference_steps, r.guidance_scale, r.cluster_temperature, r.va is None)


class RequestBatcher:
    """`generate(request)` blocks until its images are made. A worker thread takes the oldest waiting
    request and every other waiting one with the same settings, up to `max_batch_images` images in
    all, waiting `gather_s` for concurrent arrivals first, and makes them in one pipeline call."""

    def __init__(self, pipeline: CoEmoGenPipeline, max_batch_images: int, gather_s: float = 0.05) -> None:
        self.pipeline, self.max_batch_images, self.gather_s = pipeline, max_batch_images, gather_s
        self.waiting: list[_Pending] = []
        self.ready = threading.Condition()
        self.batches_made = 0  # calls made, for tests and logs
        self.worker = threading.Thread(target=self._run, name="coemogen-batcher", daemon=True)
        self.worker.start()

    def generate(self, request: GenerationRequest) -> CoEmoGenOutput:
        pending = _Pending(request)
        with self.ready:
            self.waiting.append(pending)
            self.ready.notify()
        return pending.future.result()

    def _take(self) -> list[_Pending]:
        """The next batch: the oldest request and the compatible ones after it that fit."""
        with self.ready:
            while not self.waiting:
                self.ready.wait()
            self.ready.wait(self.gather_s)  # let requests sent at the same moment join
            first = self.waiting[0]
            batch, images = [], 0
            for pending in list(self.waiting):
                fits = images + pending.request.num_images <= self.max_batch_images or not batch
                if pending.key == first.key and fits:
                    batch.append(pending)
                    images += pending.request.num_images
                    self.waiting.remove(pending)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                outputs = self._make(batch)
            except BaseException as err:  # every caller gets the failure (a CoEmoGenError keeps its message)
                for pending in batch:
                    pending.future.set_exception(err)
                continue
            for pending, output in zip(batch, outputs):
                pending.future.set_result(output)

    def _make(self, batch: list[_Pending]) -> list[CoEmoGenOutput]:
        """One pipeline call for the batch, split back into one output per request (metadata index
        and seed as the request alone would have them)."""
        emotions, points, seeds = [], [], []
        for pending in batch:
            r = pending.request
            emotions += [r.emotion] * r.num_images
            points += [r.va] * r.num_images
            seeds += [r.seed + i for i in range(r.num_images)]
        first = batch[0].request
        condition = {"emotion": emotions} if first.va is None else {"va": points}
        output = self.pipeline(
            **condition,
            num_images=len(emotions),
            seeds=seeds,
            template=first.template,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            cluster_temperature=first.cluster_temperature,
            batch_size=len(emotions),
            merge_adapters=False,  # per sample, whatever the batch mixes; the shared weights untouched
        )
        self.batches_made += 1
        outputs, start = [], 0
        for pending in batch:
            n = pending.request.num_images
            metadata = [{**meta, "index": i} for i, meta in enumerate(output.metadata[start : start + n])]
            outputs.append(CoEmoGenOutput(output.images[start : start + n], metadata))
            start += n
        return outputs
