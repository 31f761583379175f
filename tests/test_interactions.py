"""Feature-interaction layers: GDCN against its formula, MaskNet shapes and masks, the hashed cross memory."""

from __future__ import annotations

import itertools

import pytest
import torch

from sidkit.errors import ConfigError
from sidkit.ranking.interactions import GDCN, MaskNet, MemoNet, SimHashCrossMemory


def test_gdcn_equals_its_formula_on_a_tiny_case() -> None:
    gdcn = GDCN(num_fields=2, dim=1, num_layers=1)
    cross, gate = gdcn.cross[0], gdcn.gate[0]
    assert isinstance(cross, torch.nn.Linear) and isinstance(gate, torch.nn.Linear)
    with torch.no_grad():
        cross.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        cross.bias.copy_(torch.tensor([0.5, 1.0]))
        gate.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    fields = torch.tensor([[[1.0], [2.0]]])  # x0 = (1, 2)
    # By hand: W_c x0 + b = (1 + 4 + 0.5, -2 + 1) = (5.5, -1); W_g x0 = (0, 3).
    # x1 = x0 * (W_c x0 + b) * sigmoid(W_g x0) + x0 = (1 * 5.5 * 0.5 + 1, 2 * -1 * sigmoid(3) + 2).
    sig3 = 1.0 / (1.0 + torch.exp(torch.tensor(-3.0)))
    expected = torch.stack([torch.tensor(5.5 * 0.5 + 1.0), 2.0 * -1.0 * sig3 + 2.0]).unsqueeze(0)
    torch.testing.assert_close(gdcn(fields), expected)


def test_gdcn_second_layer_uses_x0_and_the_last_layer() -> None:
    torch.manual_seed(0)
    gdcn = GDCN(num_fields=3, dim=2, num_layers=2)
    fields = torch.randn(4, 3, 2)
    x0 = fields.flatten(1)
    x = x0
    for cross, gate in zip(gdcn.cross, gdcn.gate, strict=True):
        assert isinstance(cross, torch.nn.Linear) and isinstance(gate, torch.nn.Linear)
        x = x0 * (x @ cross.weight.T + cross.bias) * torch.sigmoid(x @ gate.weight.T) + x
    torch.testing.assert_close(gdcn(fields), x)
    assert gdcn.output_dim == 6


def test_masknet_shapes_and_masks() -> None:
    torch.manual_seed(0)
    net = MaskNet(num_fields=4, dim=8, num_blocks=2, ffn_dim=128, aggregation_dim=256)
    out = net(torch.randn(5, 4, 8))
    assert out.shape == (5, 128) and net.output_dim == 128
    masks = net.masks()
    assert [m.shape for m in masks] == [(5, 32), (5, 128)]  # block 1 masks the fields, block 2 its input
    assert (out >= 0).all()  # ReLU output
    # Instance-guided: different rows get different masks.
    assert not torch.allclose(masks[0][0], masks[0][1])


def test_masknet_mask_zero_gives_a_zero_block() -> None:
    net = MaskNet(num_fields=2, dim=3, num_blocks=1, ffn_dim=4, aggregation_dim=5)
    with torch.no_grad():
        last = net.blocks[0].get_submodule("mask.2")
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.zero_()
    assert torch.equal(net(torch.randn(3, 2, 3)), torch.zeros(3, 4))  # LN(0) = beta = 0, ReLU(0) = 0


def test_memory_rows_are_deterministic_and_in_range() -> None:
    memory = SimHashCrossMemory(num_fields=4, dim=8, num_rows=97, num_hashes=2, code_bits=4, output_dim=16)
    codes = torch.randint(0, 16, (6, 4))
    rows = memory.rows(codes)
    assert rows.shape == (6, 6, 2)  # 6 pairs of 4 fields, 2 hashes
    assert int(rows.min()) >= 0 and int(rows.max()) < 97
    assert torch.equal(rows, memory.rows(codes.clone()))
    assert not torch.equal(rows[..., 0], rows[..., 1])  # two different hashes


def test_memory_shares_rows_between_equal_crosses_and_learns_its_codebook() -> None:
    torch.manual_seed(0)
    memory = SimHashCrossMemory(num_fields=3, dim=4, num_rows=64, output_dim=8)
    fields = torch.randn(2, 3, 4)
    fields[1] = fields[0]
    out = memory(fields)
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[0], out[1])
    codes = memory.field_codes(fields)
    assert codes.shape == (2, 3) and int(codes.max()) < 256
    out.sum().backward()
    assert memory.codebook.weight.grad is not None and memory.codebook.weight.grad.abs().sum() > 0


def test_memory_takes_given_codes_and_checks_its_settings() -> None:
    memory = SimHashCrossMemory(num_fields=2, dim=4, num_rows=16, output_dim=8)
    assert memory(torch.randn(3, 2, 4), field_codes=torch.zeros(3, 2, dtype=torch.long)).shape == (3, 8)
    with pytest.raises(ConfigError, match="order 2"):
        SimHashCrossMemory(num_fields=3, dim=4, order=3)
    with pytest.raises(ConfigError, match="at least 2 fields"):
        SimHashCrossMemory(num_fields=1, dim=4)
    with pytest.raises(ConfigError, match="shape"):
        GDCN(num_fields=2, dim=4)(torch.randn(3, 3, 4))


def memonet_reference(memory: MemoNet, values: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """MemoNet by loops: per row and field pair, hash, restore, mask missing values, sum per field (shrinking
    'sum', restoring 'linear')."""
    prime = (1 << 31) - 1
    out = []
    for b in range(values.shape[0]):
        shrunk = [torch.zeros(memory.dim) for _ in range(memory.num_fields)]
        for p, (i, j) in enumerate(itertools.combinations(range(memory.num_fields), 2)):
            va, vb = int(values[b, i]), int(values[b, j])
            if va == 0 or vb == 0:
                continue
            words = []
            for k in range(memory.num_hashes):
                a, bb, c = int(memory.hash_a[k]), int(memory.hash_b[k]), int(memory.hash_c[k])
                h = (a * (p + 1) + bb) % prime
                h = (h * c + va % prime + 1) % prime
                h = (h * c + vb % prime + 1) % prime
                words.append(memory.codebook.weight[h % memory.num_rows])
            cross = memory.restore(torch.cat(words))
            shrunk[i] = shrunk[i] + cross
            shrunk[j] = shrunk[j] + cross
        out.append(memory.output(torch.cat([*shrunk, embeddings[b].flatten()])))
    return torch.stack(out)


def test_memonet_matches_a_loop_reference_and_skips_missing_values() -> None:
    torch.manual_seed(0)
    memory = MemoNet(num_fields=4, dim=3, num_rows=53, num_hashes=2, shrinking="sum", output_dim=5, seed=1)
    values = torch.randint(1, 10**6, (5, 4))
    values[1, 2] = 0  # a missing value: its three crosses add nothing
    embeddings = torch.randn(5, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(memory(values, embeddings), memonet_reference(memory, values, embeddings))


def test_memonet_addresses_are_cross_ids_fixed_while_training() -> None:
    memory = MemoNet(num_fields=3, dim=4, num_rows=1000, num_hashes=2, output_dim=8)
    values = torch.tensor([[7, 11, 13], [7, 11, 99], [7, 12, 13]])
    rows = memory.addresses(values)  # pairs (0, 1), (0, 2), (1, 2)
    assert rows.shape == (3, 3, 2) and int(rows.min()) >= 0 and int(rows.max()) < 1000
    # A cross's address is a function of its two values only: equal crosses share rows...
    assert torch.equal(rows[0, 0], rows[1, 0]) and not torch.equal(rows[0, 2], rows[2, 2])
    assert torch.equal(rows[0, 1], rows[2, 1])
    # ...and the same value pair in another pair of fields is another cross.
    swapped = memory.addresses(torch.tensor([[11, 7, 13]]))
    assert not torch.equal(swapped[0, 0], rows[0, 0])
    assert not torch.equal(rows[..., 0], rows[..., 1])  # two different hashes
    # Training moves the codewords, never the addresses (unlike SimHash codes of learnt embeddings).
    embeddings = torch.randn(3, 3, 4, requires_grad=True)
    optimizer = torch.optim.SGD([*memory.parameters(), embeddings], lr=1.0)
    memory(values, embeddings).square().sum().backward()
    assert memory.codebook.weight.grad is not None and memory.codebook.weight.grad.abs().sum() > 0
    optimizer.step()
    assert torch.equal(memory.addresses(values), rows)


def test_memonet_attentive_restoring_and_shrinking_and_its_checks() -> None:
    memory = MemoNet(num_fields=3, dim=4, num_rows=64, restoring="attentive", shrinking="attentive", output_dim=8)
    out = memory(torch.randint(1, 50, (6, 3)), torch.randn(6, 3, 4))
    assert out.shape == (6, 8) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="restoring"):
        MemoNet(num_fields=3, dim=4, restoring="bilinear")
    with pytest.raises(ConfigError, match="at least 2"):
        MemoNet(num_fields=1, dim=4)
    with pytest.raises(ConfigError, match="discrete_fields"):
        memory(torch.randint(1, 50, (6, 2)), torch.randn(6, 3, 4))
