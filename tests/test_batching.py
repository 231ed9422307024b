"""One loaded model, many requests: adapter selection belongs to the calling thread, one pipeline
serves concurrent calls, and the web app batches concurrent requests into one denoising pass."""

import threading

import numpy as np
import torch
from torch import nn

from coemogen.models.hilora import HiLoRALinear, adapter_weights
from coemogen.web.batching import RequestBatcher
from coemogen.web.limits import GenerationRequest


def test_each_thread_has_its_own_adapter_selection():
    torch.manual_seed(0)
    layer = HiLoRALinear(nn.Linear(4, 3), num_adapters=3, rank=2, alpha=2.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 4)
    gates = [torch.tensor([[1.0, 0, 0]] * 2), torch.tensor([[0, 0, 1.0]] * 2)]
    with torch.no_grad():
        expected = []
        for g in gates:
            with adapter_weights(layer, g):
                expected.append(layer(x))
    assert not torch.equal(expected[0], expected[1])
    inside, results = threading.Barrier(2), [None, None]

    def call(k):
        with torch.no_grad(), adapter_weights(layer, gates[k]):
            inside.wait()  # both selections active at once
            results[k] = layer(x)
            inside.wait()

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results[0], expected[0]) and torch.equal(results[1], expected[1])
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))  # no selection left behind


def test_blocks_ending_out_of_order_leave_no_fallback_selection_behind():
    """Thread A enters, B enters, A leaves, B leaves: the layer's fallback (for autograd's threads)
    follows the blocks still active and is empty at the end."""
    layer = HiLoRALinear(nn.Linear(4, 3), num_adapters=3, rank=2, alpha=2.0)
    gates = {"a": torch.tensor([[1.0, 0, 0]]), "b": torch.tensor([[0, 0, 1.0]])}
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with adapter_weights(layer, gates["a"]):
            a_in.set()
            b_in.wait()
        a_out.set()

    def b():
        a_in.wait()
        with adapter_weights(layer, gates["b"]):
            b_in.set()
            a_out.wait()
            seen["after a left"] = layer.gates

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["after a left"] is gates["b"]
    assert layer.gates is None and layer.selected is None


def _pixels(output):
    return np.stack([np.asarray(im, dtype=np.int16) for im in output.images])


def test_one_pipeline_serves_concurrent_calls(shipped_pipeline, single_torch_thread):
    kwargs = dict(num_images=2, num_inference_steps=3, merge_adapters=False)
    alone = {e: _pixels(shipped_pipeline(e, seed=7, **kwargs)) for e in ("awe", "fear")}
    results = {}

    def call(emotion):
        results[emotion] = _pixels(shipped_pipeline(emotion, seed=7, **kwargs))

    threads = [threading.Thread(target=call, args=(e,)) for e in ("awe", "fear")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((results[e] == alone[e]).all() for e in alone)
    assert not (alone["awe"] == alone["fear"]).all()


def _request(emotion, seed, steps=3, n=2):
    return GenerationRequest(emotion, None, seed, steps, 5.0, 0.4, n)


def test_concurrent_requests_with_shared_settings_are_made_in_one_pass(shipped_pipeline, single_torch_thread):
    batcher = RequestBatcher(shipped_pipeline, max_batch_images=8, gather_s=0.5)
    requests = [_request("awe", 1), _request("fear:0.7,sadness:0.3", 40), _request("awe", 1, steps=2)]
    outputs = [None] * len(requests)

    def call(k):
        outputs[k] = batcher.generate(requests[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.batches_made == 2  # the two 3-step requests together, the 2-step one alone
    for request, output in zip(requests, outputs):
        alone = shipped_pipeline(**request.pipeline_kwargs(), merge_adapters=False)
        assert [m["seed"] for m in output.metadata] == [request.seed, request.seed + 1]
        assert [m["index"] for m in output.metadata] == [0, 1]
        assert [m["weights"] for m in output.metadata] == [m["weights"] for m in alone.metadata]
        # the same draws; a CPU's float rounding may depend on the batch
        assert np.abs(_pixels(output) - _pixels(alone)).max() <= 2
    failing = GenerationRequest("awe", "{} {}", 0, 3, 5.0, 0.4, 1)  # two placeholders: refused in the call
    try:
        batcher.generate(failing)
        raise AssertionError("a bad request must fail")
    except Exception as err:
        assert "placeholder" in str(err)
    assert batcher.generate(_request("awe", 3, n=1)).metadata[0]["seed"] == 3  # the worker survived
