"""The fused full-softmax loss against torch's two-op form, and the early stopping that ends SASRec's training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sidkit.retrieval.sasrec import SasrecConfig, SasrecModel
from sidkit.retrieval.softmax import full_softmax_cross_entropy
from sidkit.retrieval.training import train_with_early_stopping

pytestmark = pytest.mark.usefixtures("one_thread")


def _loss_and_grads(fn, states, weight, labels):
    s, w = states.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(s, w, labels)
    loss.backward()
    return loss.detach(), s.grad, w.grad


def _two_ops(s, w, labels):
    logits = F.linear(s, w)  # bfloat16 under autocast: cast up as SASRec's loss did
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)


@pytest.mark.parametrize("rows,classes,chunk", [(37, 53, 8), (16, 16, 16), (5, 7, 100)])
def test_fused_loss_and_gradients_equal_the_two_op_form_in_float64(rows, classes, chunk):
    g = torch.Generator().manual_seed(rows)
    states = torch.randn(rows, 12, generator=g, dtype=torch.float64) * 2
    weight = torch.randn(classes, 12, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (rows,), generator=g)
    fused = _loss_and_grads(lambda s, w, y: full_softmax_cross_entropy(s, w, y, chunk_rows=chunk),
                            states, weight, labels)
    for got, want in zip(fused, _loss_and_grads(_two_ops, states, weight, labels), strict=True):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want.double(), rtol=1e-12, atol=1e-14)


def test_fused_loss_under_bfloat16_autocast_is_as_close_to_exact_as_the_two_op_form():
    g = torch.Generator().manual_seed(0)
    states, weight = torch.randn(300, 32, generator=g), torch.randn(501, 32, generator=g) * 0.3
    labels = torch.randint(0, 501, (300,), generator=g)
    exact = _loss_and_grads(_two_ops, states.double(), weight.double(), labels)

    def under_autocast(fn):
        def run(s, w, y):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(s, w, y)
        return _loss_and_grads(run, states, weight, labels)

    fused = under_autocast(lambda s, w, y: full_softmax_cross_entropy(s, w, y, chunk_rows=64))
    two_ops = under_autocast(_two_ops)
    for f, t, e in zip(fused, two_ops, exact, strict=True):
        assert f.dtype == torch.float32  # gradients reach float32 weights in float32
        scale = float(e.abs().max())
        fused_error, two_op_error = float((f.double() - e).abs().max()), float((t.double() - e).abs().max())
        assert fused_error <= 2 * two_op_error + 1e-6 * scale
        assert fused_error < 0.05 * scale


def test_fused_loss_scales_with_the_outer_gradient_and_handles_no_rows():
    states, weight = torch.randn(6, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    labels = torch.tensor([0, 8, 3, 3, 1, 2])
    (3.0 * full_softmax_cross_entropy(states, weight, labels)).backward()
    s, w = states.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    (3.0 * _two_ops(s, w, labels)).backward()
    torch.testing.assert_close(states.grad, s.grad)
    torch.testing.assert_close(weight.grad, w.grad)

    empty = torch.zeros((0, 4), requires_grad=True)
    loss = full_softmax_cross_entropy(empty, weight, torch.zeros(0, dtype=torch.int64))
    loss.backward()
    assert float(loss.detach()) == 0.0 and empty.grad is not None and empty.grad.shape == (0, 4)


def test_sasrec_loss_is_the_full_catalogue_cross_entropy():
    torch.manual_seed(0)
    model = SasrecModel(num_items=40, history=6, config=SasrecConfig(width=16, heads=2, layers=1, hidden=32,
                                                                    dropout=0.0)).eval()
    windows = torch.randint(0, 41, (9, 7))  # 40 = padding
    label_start = torch.randint(0, 4, (9,))
    inputs, labels = windows[:, :-1], windows[:, 1:]
    keep = (labels != 40) & (torch.arange(6)[None, :] >= label_start[:, None])
    want = F.cross_entropy(model.scores(model.states(inputs)[keep]), labels[keep])
    torch.testing.assert_close(model.loss(windows, label_start), want)


def test_sasrec_training_with_dropout_is_deterministic():
    config = SasrecConfig(width=16, heads=2, layers=1, hidden=32, dropout=0.3)
    windows = torch.randint(0, 41, (9, 7))
    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        model = SasrecModel(num_items=40, history=6, config=config).train()
        losses.append([float(model.loss(windows, torch.zeros(9, dtype=torch.int64)).detach()) for _ in range(3)])
    assert losses[0] == losses[1]
    assert len(set(losses[0])) == 3  # fresh masks per call


def test_early_stopping_ends_training_before_the_cap_and_keeps_the_best_epoch():
    model = nn.Linear(2, 1, bias=False)
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    weights = []

    def validate() -> float:
        weights.append(model.weight.detach().clone())
        return next(scores)

    batches = [torch.ones(4, 2)]
    history = train_with_early_stopping(
        model, batches=lambda epoch: batches, examples_per_epoch=lambda epoch: 4,
        loss=lambda x: (model(x) - 5).pow(2).mean(), validate=validate, epochs=50, patience=2, learning_rate=0.1,
        weight_decay=0.0, device=torch.device("cpu"), precision=torch.float32, description="t", progress=False)
    assert [e.epoch for e in history.epochs] == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2
    assert history.best_epoch == 2
    assert np.array_equal(model.weight.detach().numpy(), weights[1].numpy())


def test_the_cli_cap_on_sasrec_epochs_is_the_configs():
    import inspect

    from sidkit.cli.retrieve import retrieve

    assert inspect.signature(retrieve).parameters["sasrec_epochs"].default == SasrecConfig().epochs == 50
