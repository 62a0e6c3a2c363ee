"""vit_lesson.relevance: Chefer et al.'s gradient-weighted attention, against a loop over heads and layers."""

import pytest
import torch

from vit_lesson.factory import create_model
from vit_lesson.relevance import attention_gradients, relevance, relevance_map


def reference_relevance(attentions, gradients):
    """Chefer et al. (2021), Eq. 5-6, one image and one head at a time."""
    L, B, H, T, _ = attentions.shape
    out = torch.empty(B, T, T, dtype=torch.float64)
    for b in range(B):
        R = torch.eye(T, dtype=torch.float64)
        for layer in range(L):
            cam = sum(torch.clamp(gradients[layer, b, h].double() * attentions[layer, b, h].double(), min=0)
                      for h in range(H)) / H
            R = R + cam @ R
        out[b] = R
    return out


def test_relevance_matches_the_paper_loop():
    torch.manual_seed(0)
    attentions = torch.rand(3, 2, 4, 5, 5).softmax(-1)
    gradients = torch.randn(3, 2, 4, 5, 5)
    assert torch.allclose(relevance(attentions, gradients).double(), reference_relevance(attentions, gradients),
                          atol=1e-6)
    assert relevance_map(attentions, gradients).shape == (2, 2, 2)  # 4 patches on a 2x2 grid
    # negative gradients everywhere: nothing raised the class, so only the identity is left
    assert torch.equal(relevance(attentions, -gradients.abs()), torch.eye(5).expand(2, 5, 5))


def test_attention_gradients_follow_the_target_and_leave_the_model_as_it_was():
    torch.manual_seed(0)
    model = create_model("digits").train()
    images = torch.randn(3, 1, 16, 16)
    attentions, gradients = attention_gradients(model, images, target=torch.tensor([1, 2, 3]))
    assert attentions.shape == gradients.shape == (4, 3, 4, 17, 17)
    assert model.training and all(p.grad is None for p in model.parameters())  # mode restored, no parameter grads
    # A change of the target changes the gradients; the attentions are the model's own.
    _, other = attention_gradients(model, images, target=torch.tensor([0, 0, 0]))
    assert not torch.allclose(gradients, other)
    model.eval()
    with torch.no_grad():
        again = torch.stack(model(images, output_attentions=True).attentions)
    assert torch.allclose(attentions, again)


def test_mismatched_gradients_are_one_clear_line():
    with pytest.raises(ValueError, match="attention_gradients"):
        relevance(torch.rand(2, 1, 1, 5, 5), torch.rand(2, 1, 1, 4, 4))
