"""Notebook 08: knowledge distillation — a small student learns from a trained teacher.

Soft distillation (Hinton et al. 2015): the student matches the teacher's class probabilities,
both softened by a temperature ``T``,

``loss = alpha * CE(student, y) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

The ``T^2`` keeps the soft term's gradient the same size whatever ``T`` is: the gradient of the
KL term with respect to the student's logits is ``(p_student^T - p_teacher^T) / T``, and for large
``T`` the difference of the softened probabilities itself shrinks like ``1 / T``, so without
``T^2`` the teacher's signal would fade as ``1 / T^2``.

Hard distillation (DeiT, Touvron et al. 2021): the teacher's ``argmax`` is used as a second label,
``alpha * CE(student, y) + (1 - alpha) * CE(student, argmax teacher)``. DeiT's *distillation
token* (:class:`DistilledViT`) gives that second label its own token and head.

The teacher here is a CNN: torchvision's ResNet adapted to small images
(:func:`vit_lesson.cnn.small_resnet`, re-exported here).
Its convolutional inductive bias is exactly what a ViT lacks on small data sets (DeiT, Sec. 5.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import small_resnet
from .embeddings import trunc_normal_
from .model import ViT

__all__ = ["soft_distillation_loss", "distillation_loss", "DistillationLoss", "hard_distillation_loss",
           "DistilledViT", "small_resnet", "freeze", "make_loss_fn", "KINDS"]


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(
            f"Student and teacher logits must both be [B, num_classes] with the same shape, got "
            f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)}. "
            "Did the teacher and the student get different batches, or have different num_classes?"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"The temperature must be positive (T = 1 is no softening; Hinton et al. "
                         f"use 2 to 20), got {temperature}.")


def soft_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    ``student_logits, teacher_logits: [B, K] -> scalar``. ``nn.KLDivLoss`` / ``F.kl_div`` take the
    *student's log-probabilities* as ``input`` and the *teacher's probabilities* as ``target``, and
    ``reduction="batchmean"`` divides the summed KL by ``B`` (``"mean"`` would also divide by ``K``).
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float = 0.5, temperature: float = 4.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """Soft distillation: ``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher^T || student^T)``.

    ``student_logits, teacher_logits: [B, K]``, ``labels: [B]`` class indices ``-> scalar``.
    ``alpha = 1`` is plain training on the labels; ``alpha = 0`` learns from the teacher only.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs the label loss against the teacher's and must be in [0, 1], got {alpha}.")
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * ce + (1 - alpha) * soft_distillation_loss(student_logits, teacher_logits, temperature)


class DistillationLoss(nn.Module):
    """The blog post's ``DistillationLoss``, made correct: the temperature is a real parameter.

    ``forward(student_logits [B, K], teacher_logits [B, K], labels [B]) -> scalar``; same numbers as
    :func:`distillation_loss`. (The post's version refers to a ``T`` it never defines.)
    """

    def __init__(self, alpha: float = 0.5, temperature: float = 4.0):
        super().__init__()
        _check_temperature(temperature)
        self.alpha, self.temperature = alpha, temperature
        self.ce_loss = nn.CrossEntropyLoss()
        self.kl_loss = nn.KLDivLoss(reduction="batchmean")

    def forward(self, student_logits, teacher_logits, labels):
        T = self.temperature
        _check_logits(student_logits, teacher_logits)
        ce_loss = self.ce_loss(student_logits, labels)
        kl_loss = self.kl_loss(F.log_softmax(student_logits / T, dim=-1),
                               F.softmax(teacher_logits / T, dim=-1)) * T ** 2
        return self.alpha * ce_loss + (1 - self.alpha) * kl_loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}"


def hard_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                           alpha: float = 0.5, label_smoothing: float = 0.0) -> torch.Tensor:
    """DeiT's hard distillation: the teacher's decision is a second label.

    ``alpha * CE(student, labels) + (1 - alpha) * CE(student, teacher.argmax(-1))`` (DeiT uses
    ``alpha = 1/2``). ``[B, K], [B, K], [B] -> scalar``; no temperature, nothing to tune.
    With a distillation token pass the class head's logits and the distillation head's logits
    separately (see :func:`make_loss_fn`).
    """
    _check_logits(student_logits, teacher_logits)
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * ce + (1 - alpha) * F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))


class DistilledViT(ViT):
    """DeiT's student: a ViT with a second, *distillation* token and its own head.

    It only says what is new: two prefix tokens, ``[cls, dist]`` (so ``pos_embed`` covers ``N + 2``
    tokens and ``z_0`` is built by :meth:`ViT.embed` as for any ViT), and a second head.
    ``head`` reads the class token and is trained on the true labels; ``head_dist`` reads the
    distillation token and is trained on the teacher's labels. :meth:`forward_heads` returns both
    ``([B, K], [B, K])``; :meth:`forward` returns their average, DeiT's prediction at test time.
    Parameter names are timm's ``VisionTransformerDistilled`` (``dist_token``, ``head_dist``), so the
    state dict loads into timm unchanged.
    """

    num_prefix_tokens = 2

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.dist_token = nn.Parameter(trunc_normal_(torch.zeros(1, 1, self.config.hidden_size)))
        self.head_dist = self.new_head(self.config.num_classes)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"dist_token"}

    def prefix_tokens(self) -> torch.Tensor:
        """``[1, 2, D]``: the class token, then the distillation token."""
        return torch.cat([self.cls_token, self.dist_token], dim=1)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, H, W] -> (class-head logits [B, K], distillation-head logits [B, K])``."""
        tokens = self.forward_features(x)
        return self.head(tokens[:, 0]), self.head_dist(tokens[:, 1])

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The average of the two heads, ``[B, K]`` (``pre_logits``: of the two tokens, ``[B, D]``)."""
        if pre_logits:
            return (tokens[:, 0] + tokens[:, 1]) / 2
        return (self.head(tokens[:, 0]) + self.head_dist(tokens[:, 1])) / 2

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self.head_dist = self.new_head(num_classes)


def freeze(model: nn.Module) -> nn.Module:
    """Make ``model`` a fixed teacher: eval mode (BatchNorm uses its running statistics, dropout is
    off) and ``requires_grad=False`` on every parameter. Returns the same module."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


KINDS = ("none", "soft", "hard", "token")


def make_loss_fn(teacher: nn.Module | None = None, kind: str = "soft", alpha: float = 0.5,
                 temperature: float = 4.0, label_smoothing: float = 0.0):
    """A ``loss_fn(model, images, labels) -> (loss, logits)`` for :func:`vit_lesson.train.train`.

    ``kind``: ``"none"`` (labels only, no teacher), ``"soft"`` (:func:`distillation_loss`),
    ``"hard"`` (:func:`hard_distillation_loss`), ``"token"`` (a :class:`DistilledViT`: class head on
    the labels, distillation head on the teacher's labels, weighted ``alpha`` / ``1 - alpha``; the
    returned logits are the two heads' average). The teacher is frozen (:func:`freeze`) and run
    under ``torch.no_grad()``: no gradient ever reaches it.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown distillation kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if kind != "none":
        if teacher is None:
            raise ValueError(f"kind={kind!r} needs a trained teacher model.")
        freeze(teacher)

    def loss_fn(model, images, labels):
        if kind == "token":
            if not hasattr(model, "forward_heads"):
                raise ValueError("kind='token' needs a student with a distillation token (DistilledViT).")
            cls_logits, dist_logits = model.forward_heads(images)
        else:
            cls_logits = model(images)
        if kind == "none":
            return F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing), cls_logits
        if next(teacher.parameters()).device != images.device:
            teacher.to(images.device)  # e.g. the trainer moved the student to the GPU
        with torch.no_grad():
            teacher_logits = teacher(images)
        if kind == "soft":
            loss = distillation_loss(cls_logits, teacher_logits, labels, alpha, temperature, label_smoothing)
        elif kind == "hard":
            loss = hard_distillation_loss(cls_logits, teacher_logits, labels, alpha, label_smoothing)
        else:
            loss = (alpha * F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing)
                    + (1 - alpha) * F.cross_entropy(dist_logits, teacher_logits.argmax(dim=-1)))
            return loss, (cls_logits + dist_logits) / 2
        return loss, cls_logits

    return loss_fn
