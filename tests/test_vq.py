"""Residual VQ: gradient paths, the EMA update against a hand computation, dead-code reset, rotation trick."""

from __future__ import annotations

import pytest
import torch

from sidkit.tokenizers.vq import ResidualVQ, rotate_to, smoothed_counts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_straight_through_passes_the_gradient_unchanged_to_the_latents():
    vq = ResidualVQ([4, 4], 3)
    z = torch.randn(10, 3, requires_grad=True)
    weight = torch.randn(10, 3)
    out = vq(z)
    (out.quantized * weight).sum().backward()
    assert z.grad is not None
    torch.testing.assert_close(z.grad, weight)
    # Forward value is the sum of the chosen codewords.
    torch.testing.assert_close(out.quantized.detach(), vq.quantize_codes(out.codes), atol=1e-6, rtol=0)


def test_losses_move_codebooks_and_latents_as_defined():
    vq = ResidualVQ([3], 2)
    vq.init_codebooks([torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])])
    z = torch.tensor([[0.9, 0.1], [0.2, 0.8]], requires_grad=True)
    out = vq(z)
    assert out.codes[:, 0].tolist() == [1, 2]
    expected = ((0.1**2 + 0.1**2) + (0.2**2 + 0.2**2)) / 2  # mean over the batch of summed squares
    torch.testing.assert_close(out.codebook_loss, torch.tensor(expected))
    torch.testing.assert_close(out.commitment_loss, torch.tensor(expected))
    out.commitment_loss.backward()
    assert z.grad is not None and torch.count_nonzero(z.grad) == 4
    assert vq.codebooks[0].grad is None  # the commitment term never moves the codebook


def _textbook_losses(z: torch.Tensor, codebooks: list[torch.Tensor], codes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The RQ-VAE terms written out with autograd, level by level (the reference for the fused node)."""
    residual, total = z, torch.zeros_like(z)
    codebook_loss = commitment_loss = z.new_zeros(())
    for level, codebook in enumerate(codebooks):
        codeword = codebook[codes[:, level]]
        codebook_loss = codebook_loss + (residual.detach() - codeword).square().sum(1).mean()
        commitment_loss = commitment_loss + (residual - codeword.detach()).square().sum(1).mean()
        total = total + codeword.detach()
        residual = residual - codeword.detach()
    return z + (total - z).detach(), codebook_loss, commitment_loss


def test_fused_loss_gradients_equal_the_textbook_autograd_terms():
    torch.manual_seed(3)
    vq = ResidualVQ([5, 4, 3], 6)
    z = torch.randn(40, 6, requires_grad=True)
    weights = torch.randn(40, 6), 0.7, 0.25  # upstream of quantized, codebook and commitment terms
    out = vq(z)
    (out.quantized * weights[0]).sum().add(weights[1] * out.codebook_loss + weights[2] * out.commitment_loss).backward()
    got = [z.grad.clone(), *(c.grad.clone() for c in vq.codebooks)]

    z_ref = z.detach().clone().requires_grad_(True)
    books = [c.detach().clone().requires_grad_(True) for c in vq.codebooks]
    quantized, codebook_loss, commitment_loss = _textbook_losses(z_ref, books, out.codes)
    (quantized * weights[0]).sum().add(weights[1] * codebook_loss + weights[2] * commitment_loss).backward()
    torch.testing.assert_close(out.quantized.detach(), quantized.detach())
    torch.testing.assert_close(out.codebook_loss.detach(), codebook_loss.detach())
    torch.testing.assert_close(out.commitment_loss.detach(), commitment_loss.detach())
    for ours, reference in zip(got, [z_ref.grad, *(b.grad for b in books)], strict=True):
        torch.testing.assert_close(ours, reference)


def test_residual_levels_quantize_what_the_previous_level_left():
    vq = ResidualVQ([2, 2], 1)
    vq.init_codebooks([torch.tensor([[0.0], [10.0]]), torch.tensor([[-1.0], [1.0]])])
    vq.eval()
    with torch.no_grad():
        out = vq(torch.tensor([[9.2], [0.8], [-0.7]]))
    assert out.codes.tolist() == [[1, 0], [0, 1], [0, 0]]
    torch.testing.assert_close(out.quantized, torch.tensor([[9.0], [1.0], [-1.0]]))


def test_one_ema_update_equals_the_hand_computation():
    decay, eps = 0.5, 1e-5
    vq = ResidualVQ([2], 2, ema=True, decay=decay, eps=eps)
    vq.init_codebooks([torch.tensor([[0.0, 0.0], [4.0, 4.0]])])  # counts start at 1, sums at the codewords
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 5.0]])
    out = vq(z)
    assert out.codes[:, 0].tolist() == [0, 0, 1]
    assert float(out.codebook_loss) == 0.0  # EMA codebooks have no codebook term
    # By hand: N = 0.5 * 1 + 0.5 * n, S = 0.5 * e + 0.5 * s.
    count = torch.tensor([0.5 + 0.5 * 2, 0.5 + 0.5 * 1])  # 1.5, 1.0
    sums = torch.tensor([[0.5 * 0 + 0.5 * 1, 0.5 * 0 + 0.5 * 1], [0.5 * 4 + 0.5 * 3, 0.5 * 4 + 0.5 * 5]])
    total = count.sum()
    smoothed = (count + eps) / (total + 2 * eps) * total
    expected = sums / smoothed[:, None]
    torch.testing.assert_close(vq.buffer("ema_count", 0), count)
    torch.testing.assert_close(vq.buffer("ema_sum", 0), sums)
    torch.testing.assert_close(vq.codebooks[0].detach(), expected)
    torch.testing.assert_close(expected, torch.tensor([[1 / 3, 1 / 3], [3.5, 4.5]]), atol=1e-4, rtol=0)


def test_eval_mode_changes_no_codebook():
    vq = ResidualVQ([2], 2, ema=True, dead_code_steps=1)
    before = vq.codebooks[0].detach().clone()
    vq.eval()
    vq(torch.randn(5, 2))
    torch.testing.assert_close(vq.codebooks[0].detach(), before)


def test_a_dead_code_moves_onto_a_batch_residual_after_the_set_number_of_steps():
    vq = ResidualVQ([3], 2, dead_code_steps=2)
    vq.init_codebooks([torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]])])  # code 2 is far from all
    z = torch.tensor([[0.1, 0.0], [0.9, 1.0], [1.1, 0.9], [0.0, 0.2]])
    generator = torch.Generator().manual_seed(0)
    first = vq(z, generator)
    assert first.resets.tolist() == [0]
    assert vq.buffer("unused_steps", 0).tolist() == [0, 0, 1]
    second = vq(z, generator)
    assert second.resets.tolist() == [1]
    reset = vq.codebooks[0][2].detach()
    assert any(torch.equal(reset, row) for row in z)  # level-0 residual = the latent itself
    assert vq.buffer("unused_steps", 0).tolist() == [0, 0, 0]
    third = vq(torch.cat([z, reset[None]]), generator)
    assert 2 in third.codes[:, 0].tolist()


def test_dead_code_reset_with_ema_resets_the_statistics_too():
    vq = ResidualVQ([2], 1, ema=True, dead_code_steps=1)
    vq.init_codebooks([torch.tensor([[0.0], [50.0]])])
    z = torch.tensor([[0.5], [1.5]])
    vq(z, torch.Generator().manual_seed(1))
    code = vq.codebooks[0][1].detach()
    assert float(code) in (0.5, 1.5)
    assert float(vq.buffer("ema_count", 0)[1]) == 1.0
    torch.testing.assert_close(vq.buffer("ema_sum", 0)[1], code)


def test_gradients_flow_with_dead_code_reset_in_the_same_step():
    vq = ResidualVQ([4, 4], 3, dead_code_steps=1)
    z = torch.randn(6, 3, requires_grad=True)
    out = vq(z, torch.Generator().manual_seed(0))
    (out.quantized.square().sum() + out.codebook_loss + out.commitment_loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert vq.codebooks[0].grad is not None


def test_rotation_trick_forward_is_the_target_and_backward_the_rotation():
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(5, 4, generator=generator, requires_grad=True)
    target = torch.randn(5, 4, generator=generator)
    out = rotate_to(source, target)
    torch.testing.assert_close(out.detach(), target, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(5, 4, generator=generator)
    (out * upstream).sum().backward()
    assert source.grad is not None
    for i in range(5):
        s, t = source[i].detach(), target[i]
        u, q = s / s.norm(), t / t.norm()
        w = (u + q) / (u + q).norm()
        rotation = torch.eye(4) - 2 * torch.outer(w, w) + 2 * torch.outer(q, u)
        scale = t.norm() / s.norm()
        torch.testing.assert_close(rotation @ u, q, atol=1e-5, rtol=1e-5)  # R takes u to q
        torch.testing.assert_close(source.grad[i], scale * rotation.T @ upstream[i], atol=1e-5, rtol=1e-5)


def test_quantizer_with_rotation_trick_keeps_the_forward_value():
    vq = ResidualVQ([4], 3, rotation_trick=True)
    z = torch.randn(8, 3, requires_grad=True)
    out = vq(z)
    torch.testing.assert_close(out.quantized.detach(), vq.quantize_codes(out.codes), atol=1e-5, rtol=1e-5)
    out.quantized.sum().backward()
    assert z.grad is not None and torch.count_nonzero(z.grad) > 0


def test_smoothed_counts_keep_their_total():
    count = torch.tensor([0.0, 2.0, 6.0])
    smoothed = smoothed_counts(count, 1e-3)
    assert float(smoothed.sum()) == pytest.approx(8.0)
    assert float(smoothed[0]) > 0
