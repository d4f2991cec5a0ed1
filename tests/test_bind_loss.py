"""ImageBind's InfoNCE and retrieval recall against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from lit_multimodal.multimodal.imagebind.bind.loss import infonce_loss, retrieval_recalls


def _unit(rows: list[list[float]]) -> list[list[float]]:
    return [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in rows]


def _hand_loss(m: list[list[float]], a: list[list[float]], tau: float, labels=None) -> tuple[float, float]:
    """Mean over rows of -log softmax, both directions, written out with math only."""
    m, a = _unit(m), _unit(a)
    n = len(m)
    sim = [[sum(x * y for x, y in zip(m[i], a[j], strict=True)) / tau for j in range(n)] for i in range(n)]

    def kept(i: int, j: int) -> bool:
        return labels is None or i == j or labels[i] != labels[j]

    m2a = -sum(sim[i][i] - math.log(sum(math.exp(sim[i][j]) for j in range(n) if kept(i, j))) for i in range(n)) / n
    a2m = -sum(sim[j][j] - math.log(sum(math.exp(sim[i][j]) for i in range(n) if kept(i, j))) for j in range(n)) / n
    return m2a, a2m


def test_infonce_matches_hand_computation():
    gen = torch.Generator().manual_seed(0)
    m, a = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    loss, m2a, a2m = infonce_loss(m * 3.0, a, temperature=0.05)
    want_m2a, want_a2m = _hand_loss(m.tolist(), a.tolist(), 0.05)
    assert m2a.item() == pytest.approx(want_m2a, rel=1e-5)
    assert a2m.item() == pytest.approx(want_a2m, rel=1e-5)
    assert loss.item() == pytest.approx(want_m2a + want_a2m, rel=1e-5)  # the paper sums the two directions


def test_same_label_negatives_are_masked():
    gen = torch.Generator().manual_seed(1)
    m, a = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    labels = [0, 1, 0, 2, 1, 2]
    _, m2a, a2m = infonce_loss(m, a, 0.1, labels=torch.tensor(labels))
    want = _hand_loss(m.tolist(), a.tolist(), 0.1, labels)
    assert (m2a.item(), a2m.item()) == pytest.approx(want, rel=1e-5)
    plain = infonce_loss(m, a, 0.1)[1]
    assert plain.item() > m2a.item()  # fewer negatives, smaller loss


def test_retrieval_recalls_by_hand():
    keys = torch.eye(4)
    # query 0 -> key 0 (rank 0); query 1 closest to key 2 then key 1 (rank 1); query 2 -> key 3, 0, 1 before 2
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 0.6, 0.8, 0], [0.5, 0.4, 0.1, 0.9], [0, 0, 0, 1.0]])
    got = retrieval_recalls(queries, keys, ks=(1, 2, 4), labels=torch.tensor([0, 1, 1, 3]))
    assert got["R@1"] == pytest.approx(2 / 4)
    assert got["R@2"] == pytest.approx(3 / 4)
    assert got["R@4"] == pytest.approx(1.0)
    assert got["class_R@1"] == pytest.approx(3 / 4)  # query 1 retrieves key 2, which has its class
