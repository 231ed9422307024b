import torch
from torch import nn

from coemogen.models.hilora import HiLoRALinear, adapter_gates, hilora_layers, inject_hilora
from coemogen.taxonomy import Taxonomy


def _membership(taxonomy: Taxonomy) -> torch.Tensor:
    m = torch.zeros(taxonomy.num_emotions, taxonomy.num_groups)
    for i, e in enumerate(taxonomy.emotions):
        m[i, taxonomy.group_index_of(e)] = 1
    return m


def _layer(num_adapters=10, rank=4, seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(6, 5)
    layer = HiLoRALinear(base, num_adapters, rank, alpha=rank, gate=None)  # gate set below
    from coemogen.models.hilora import HiLoRAGate

    layer.gate = HiLoRAGate()
    nn.init.normal_(layer.lora_B)  # B starts at zero in training; non-zero here to see A's gradient
    return layer


def test_forward_equals_sum_of_selected_adapters():
    tax = Taxonomy.default()
    layer = _layer()
    x = torch.randn(3, 7, 6)
    labels = torch.tensor([0, 5, 7])  # amusement (positive), disgust, sadness (negative)
    gates = adapter_gates(torch.nn.functional.one_hot(labels, 8).float(), _membership(tax))
    layer.gate.weights = gates
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
    layer.gate.weights = adapter_gates(torch.nn.functional.one_hot(labels, 8).float(), _membership(tax))
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
    layer.gate.weights = gate_row.expand(2, -1)
    gated = layer(x)
    layer.merge(gate_row)
    merged = layer(x)  # merged: the LoRA branch is skipped
    torch.testing.assert_close(merged, gated, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    assert torch.equal(layer.base.weight, original)


def test_inject_targets_attention_projections_and_cfg_doubling(tiny_models):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_models[0], subfolder="unet")
    gate = inject_hilora(unet, num_adapters=10, rank=4)
    names = [n for n, _ in hilora_layers(unet)]
    assert names and all(n.endswith(("to_q", "to_k", "to_v", "to_out.0")) for n in names)
    assert any(".attn1." in n for n in names) and any(".attn2." in n for n in names)
    for _, layer in hilora_layers(unet):
        assert torch.count_nonzero(layer.lora_B) == 0  # B starts at zero: the base model is unchanged
    sample = torch.randn(1, 4, 16, 16)
    cond = torch.randn(2, 77, unet.config.cross_attention_dim)
    gate.weights = torch.zeros(1, 10)
    gate.weights[0, 3] = 1
    out = unet(sample.repeat(2, 1, 1, 1), 10, cond).sample  # gates (1 row) broadcast over the CFG pair
    assert out.shape == (2, 4, 16, 16)
