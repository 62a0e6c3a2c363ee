"""Notebook 07: gradient-weighted attention, the map that asks which attention mattered for the class.

Rollout (:func:`vit_lesson.attention_maps.rollout`) follows *all* attention through the layers,
whether or not it changed the prediction. Chefer, Gur & Wolf (2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", Eq. 5-6) weight each
layer's attention by its gradient with respect to the predicted class's logit, keep the positive
part, average the heads, and accumulate with the identity for the residual:

    Ā_l = E_h[(∇A_l ⊙ A_l)^+],      R = I,      R ← R + Ā_l R   for l = 1 .. L

so a patch gets relevance only where attention to it *raised* the class score. Row 0 of ``R``,
columns ``1:`` is the class token's map (:func:`relevance_map`). The class token's row of
:func:`attention_gradients` needs one backward pass per batch.
"""

from __future__ import annotations

import torch

from .attention_maps import _as_grid, stack_attentions

__all__ = ["attention_gradients", "relevance", "relevance_map"]


def attention_gradients(model, images: torch.Tensor, target: torch.Tensor | None = None):
    """``(attentions [L, B, H, T, T], gradients [L, B, H, T, T])`` of ``model`` on ``images``.

    The gradients are those of the sum over the batch of each image's logit for ``target``
    (``[B]`` class indices; default: the predicted class). The model runs in eval mode; its
    parameters get no gradients.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            output = model(images, output_attentions=True)
            logits, attentions = output.logits, output.attentions
            target = logits.argmax(1) if target is None else target
            score = logits.gather(1, target.view(-1, 1)).sum()
            gradients = torch.autograd.grad(score, attentions)
    finally:
        model.train(was_training)
    return stack_attentions([a.detach() for a in attentions]), stack_attentions(gradients)


def relevance(attentions, gradients) -> torch.Tensor:
    """Chefer et al.'s relevance: ``L x [B, H, T, T]`` attentions and their gradients -> ``[B, T, T]``."""
    attentions, gradients = stack_attentions(attentions), stack_attentions(gradients)
    if attentions.shape != gradients.shape:
        raise ValueError(f"attentions {list(attentions.shape)} and gradients {list(gradients.shape)} differ; "
                         "take both from attention_gradients(model, images).")
    T = attentions.shape[-1]
    result = torch.eye(T, dtype=attentions.dtype, device=attentions.device).expand(attentions.shape[1], T, T)
    for attention, gradient in zip(attentions, gradients):
        weighted = (gradient * attention).clamp(min=0).mean(dim=1)  # [B, T, T]: heads averaged
        result = result + weighted @ result
    return result


def relevance_map(attentions, gradients, grid=None, num_prefix_tokens: int = 1) -> torch.Tensor:
    """The class token's row of :func:`relevance`, its patch columns (after ``num_prefix_tokens``:
    itself, and registers if any), on the patch grid: ``[B, g, g]``."""
    return _as_grid(relevance(attentions, gradients)[:, 0, num_prefix_tokens:], grid)
