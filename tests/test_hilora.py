import pytest
import torch
from torch import nn

from coemogen.models import hilora
from coemogen.models.hilora import (
    HiLoRALinear,
    adapter_gates,
    adapter_weights,
    hilora_layers,
    inject_hilora,
    sparse_selection,
)
from coemogen.taxonomy import Taxonomy


def _membership(taxonomy: Taxonomy) -> torch.Tensor:
    return taxonomy.membership()


def _layer(num_adapters=10, rank=4, seed=0):
    torch.manual_seed(seed)
    layer = HiLoRALinear(nn.Linear(6, 5), num_adapters, rank, alpha=rank)
    nn.init.normal_(layer.lora_B)  # B starts at zero in training; non-zero here to see A's gradient
    return layer


def _model(layer: HiLoRALinear) -> nn.Module:
    return nn.Sequential(layer)


def test_forward_equals_sum_of_selected_adapters():
    tax = Taxonomy.default()
    layer = _layer()
    x = torch.randn(3, 7, 6)
    labels = torch.tensor([0, 5, 7])  # amusement (positive), disgust, sadness (negative)
    gates = adapter_gates(torch.nn.functional.one_hot(labels, 8).float(), _membership(tax))
    with adapter_weights(_model(layer), gates):
        y = layer(x)
    r = layer.rank
    for b, label in enumerate(labels.tolist()):
        group = 8 + tax.group_index_of(tax.emotions[label])
        expected = layer.base(x[b])
        for a in (label, group):
            A, B = layer.lora_A[a * r : (a + 1) * r], layer.lora_B[:, a * r : (a + 1) * r]
            expected = expected + x[b] @ A.T @ B.T
        torch.testing.assert_close(y[b], expected)


def test_each_sample_gradient_reaches_only_its_adapters():
    tax = Taxonomy.default()
    layer = _layer()
    x = torch.randn(4, 3, 6)
    labels = torch.tensor([1, 1, 4, 6])  # awe, awe, anger, fear
    with adapter_weights(
        _model(layer), adapter_gates(torch.nn.functional.one_hot(labels, 8).float(), _membership(tax))
    ):
        y = layer(x)
    r = layer.rank
    for b, label in enumerate(labels.tolist()):
        layer.zero_grad()
        y[b].sum().backward(retain_graph=True)
        active = {label, 8 + tax.group_index_of(tax.emotions[label])}
        for a in range(10):
            ga = layer.lora_A.grad[a * r : (a + 1) * r]
            gb = layer.lora_B.grad[:, a * r : (a + 1) * r]
            if a in active:
                assert ga.abs().sum() > 0 and gb.abs().sum() > 0
            else:
                assert torch.count_nonzero(ga) == 0 and torch.count_nonzero(gb) == 0


def test_levels_can_be_switched_off_and_mixed():
    tax = Taxonomy.default()
    m = _membership(tax)
    w = torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0.25, 0, 0, 0.75, 0]])
    g = adapter_gates(w, m)
    assert torch.allclose(g[0, 8:], torch.tensor([1.0, 0.0]))
    assert torch.allclose(g[1, 8:], torch.tensor([0.25, 0.75]))
    assert torch.count_nonzero(adapter_gates(w, m, emotion_scale=0.0)[:, :8]) == 0
    assert torch.count_nonzero(adapter_gates(w, m, group_scale=0.0)[:, 8:]) == 0


def test_merge_matches_gated_forward_and_unmerge_restores_bits():
    layer = _layer()
    original = layer.base.weight.detach().clone()
    gate_row = torch.zeros(10)
    gate_row[[2, 8]] = 1
    x = torch.randn(2, 5, 6)
    with adapter_weights(_model(layer), gate_row.expand(2, -1)):
        gated = layer(x)
    with adapter_weights(_model(layer), gate_row.expand(2, -1), merge=True):
        assert torch.equal(layer.merged_gate, gate_row)
        merged = layer(x)  # merged: the LoRA branch is skipped
    torch.testing.assert_close(merged, gated, rtol=1e-5, atol=1e-5)
    assert layer.merged_gate is None and layer.gates is None
    assert torch.equal(layer.base.weight, original)


def test_mixed_rows_are_not_merged():
    layer = _layer()
    original = layer.base.weight.detach().clone()
    gates = torch.eye(10)[[0, 3]]
    with adapter_weights(_model(layer), gates, merge=True):
        assert layer.merged_gate is None and torch.equal(layer.base.weight, original)


def test_selection_is_restored_after_nesting_and_errors():
    layer = _layer()
    outer, inner = torch.eye(10)[[1]], torch.eye(10)[[4]]
    with adapter_weights(_model(layer), outer):
        with adapter_weights(_model(layer), inner):
            assert torch.equal(layer.gates, inner)
        assert torch.equal(layer.gates, outer)
        with pytest.raises(KeyError), adapter_weights(_model(layer), inner):
            raise KeyError("boom")
        assert torch.equal(layer.gates, outer)
    assert layer.gates is None


def test_bad_states_are_refused():
    layer = _layer()
    x = torch.randn(3, 6)
    with pytest.raises(RuntimeError, match="no adapter selected"):
        layer(x)  # adapters require grad and grad is on: a training call without a selection
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.base(x))  # inference without a selection: the base model
    with (
        pytest.raises(RuntimeError, match="multiple of the gate rows"),
        adapter_weights(_model(layer), torch.eye(10)[:2]),
    ):
        layer(x)
    with pytest.raises(ValueError, match="gates must be"), adapter_weights(_model(layer), torch.ones(2, 7)):
        pass
    row = torch.eye(10)[[2]]
    with adapter_weights(_model(layer), row, merge=True):
        with (
            pytest.raises(RuntimeError, match="merged with another gate"),
            adapter_weights(_model(layer), torch.eye(10)[[5]]),
        ):
            pass
        with adapter_weights(_model(layer), row):  # the merged gate itself is fine
            pass
    with pytest.raises(ValueError, match="alpha must be positive"):
        HiLoRALinear(nn.Linear(6, 5), 10, 4, alpha=0)
    with pytest.raises(ValueError, match="no HiLoRA layers"), adapter_weights(nn.Linear(2, 2), row):
        pass


def test_inject_targets_attention_projections_and_cfg_doubling(tiny_models):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_models[0], subfolder="unet")
    inject_hilora(unet, num_adapters=10, rank=4, alpha=4.0)
    names = [n for n, _ in hilora_layers(unet)]
    assert names and all(n.endswith(("to_q", "to_k", "to_v", "to_out.0")) for n in names)
    assert any(".attn1." in n for n in names) and any(".attn2." in n for n in names)
    for _, layer in hilora_layers(unet):
        assert torch.count_nonzero(layer.lora_B) == 0  # B starts at zero: the base model is unchanged
        torch.nn.init.normal_(layer.lora_B, std=0.1)  # now make the adapters matter
    sample = torch.randn(2, 4, 16, 16)
    cond = torch.randn(2, 77, unet.config.cross_attention_dim)
    gates = torch.eye(10)[[3, 6]]
    with torch.no_grad():
        with adapter_weights(unet, gates):
            separate = unet(sample, 10, cond).sample
            # The CFG layout: [uncond; cond] stacks the batch twice; gate rows repeat over both halves.
            doubled = unet(torch.cat([sample, sample]), 10, torch.cat([cond, cond])).sample
        base = unet(sample, 10, cond).sample  # no selection at inference: the base model
    torch.testing.assert_close(doubled[:2], separate, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(doubled[2:], separate, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(separate, base, atol=1e-4)  # the adapters were applied


def test_gathered_form_equals_dense_form_in_values_and_gradients(monkeypatch):
    tax = Taxonomy.default()
    labels = torch.tensor([0, 5, 7, 5])
    gates = adapter_gates(torch.nn.functional.one_hot(labels, 8).float(), _membership(tax))
    gates[3] = adapter_gates(torch.tensor([[0, 0, 0, 0, 0, 0.3, 0.7, 0]]), _membership(tax))[0]  # a mix row
    x = torch.randn(8, 7, 6)  # two copies of the gate rows, as classifier-free guidance makes
    results = {}
    for form in ("dense", "gathered"):
        layer = _layer()
        # the dense form, which the selection would otherwise skip, by selecting nothing sparse
        monkeypatch.setattr(hilora, "sparse_selection", (lambda g: None) if form == "dense" else sparse_selection)
        with adapter_weights(_model(layer), gates):
            if form == "dense":
                assert layer.selected is None
            else:
                index, values = layer.selected
                assert index.shape == (4, 3) and values.shape == (4, 3)  # the mix row uses 3 adapters
            y = layer(x)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[form] = (y.detach(), layer.lora_A.grad, layer.lora_B.grad)
    for dense, gathered in zip(results["dense"], results["gathered"]):
        torch.testing.assert_close(gathered, dense, rtol=1e-5, atol=1e-6)
    grad_A = results["gathered"][1].view(10, 4, 6)
    unused = sorted(set(range(10)) - set(gates.nonzero()[:, 1].tolist()))
    assert unused and all(torch.count_nonzero(grad_A[a]) == 0 for a in unused)


def test_shared_selection_equals_dense_form_in_values_and_gradients(monkeypatch):
    """A batch whose samples all select the same adapters (one emotion, or a batch of one, with
    different gate values) takes the two-GEMM form: the same values and gradients as the dense form."""
    tax = Taxonomy.default()
    gates = adapter_gates(torch.nn.functional.one_hot(torch.tensor([5, 5, 5]), 8).float(), _membership(tax))
    gates[1] *= 0.5
    x = torch.randn(6, 7, 6)
    results = {}
    for form in ("dense", "shared"):
        layer = _layer()
        monkeypatch.setattr(hilora, "sparse_selection", (lambda g: None) if form == "dense" else sparse_selection)
        with adapter_weights(_model(layer), gates):
            if form == "dense":
                assert layer.selected is None
            else:
                index, values = layer.selected
                assert index.shape == (1, 2) and values.shape == (3, 2)
            y = layer(x)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[form] = (y.detach(), layer.lora_A.grad, layer.lora_B.grad)
    for dense, shared in zip(results["dense"], results["shared"]):
        torch.testing.assert_close(shared, dense, rtol=1e-5, atol=1e-6)


def test_sparse_selection_only_when_some_adapter_is_unused_everywhere():
    from coemogen.models.hilora import sparse_selection

    assert sparse_selection(torch.ones(2, 3)) is None
    index, values = sparse_selection(torch.tensor([[0.0, 2.0, 0.0], [0.5, 0.0, 0.0]]))
    assert index.tolist() == [[1], [0]] and values.tolist() == [[2.0], [0.5]]
