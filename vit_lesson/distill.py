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

The teacher here is a CNN: torchvision's ResNet adapted to small images (:func:`small_resnet`).
Its convolutional inductive bias is exactly what a ViT lacks on small data sets (DeiT, Sec. 5.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import init_token
from .model import ViT, ViTOutput

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

    The sequence is ``[cls, dist, patch_1 .. patch_N]`` (``pos_embed`` covers ``N + 2`` tokens).
    ``head`` reads the class token and is trained on the true labels; ``head_dist`` reads the
    distillation token and is trained on the teacher's labels. :meth:`forward_heads` returns both
    ``([B, K], [B, K])``; :meth:`forward` returns their average, DeiT's prediction at test time.
    Parameter names are timm's ``VisionTransformerDistilled`` (``dist_token``, ``head_dist``), so the
    state dict loads into timm unchanged.
    """

    num_prefix_tokens = 2

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        D, K = self.config.hidden_size, self.config.num_classes
        self.dist_token = nn.Parameter(init_token(torch.zeros(1, 1, D)))
        self.pos_embed = nn.Parameter(init_token(torch.zeros(1, self.config.num_patches + 2, D)))
        self.head_dist = nn.Linear(D, K) if K > 0 else nn.Identity()
        if K > 0:
            init_token(self.head_dist.weight), nn.init.zeros_(self.head_dist.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, N + 2, D]``: class token, distillation token, patches, ``+ E_pos``."""
        x = self.patch_embed(x)                                          # [B, N, D]
        prefix = torch.cat([self.cls_token, self.dist_token], dim=1)     # [1, 2, D]
        x = torch.cat([prefix.expand(x.shape[0], -1, -1), x], dim=1)     # [B, N + 2, D]
        return self.pos_drop(x + self.pos_embed)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, H, W] -> (class-head logits [B, K], distillation-head logits [B, K])``."""
        tokens = self.forward_features(x)
        return self.head(tokens[:, 0]), self.head_dist(tokens[:, 1])

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        """The average of the two heads, ``[B, K]`` (a :class:`ViTOutput` with attentions)."""
        if output_attentions:
            tokens, attentions = self.forward_features(x, output_attentions=True)
            return ViTOutput((self.head(tokens[:, 0]) + self.head_dist(tokens[:, 1])) / 2, attentions)
        cls_logits, dist_logits = self.forward_heads(x)
        return (cls_logits + dist_logits) / 2


def small_resnet(num_classes: int = 10, in_chans: int = 3, width: int = 64, depth: int = 18) -> nn.Module:
    """torchvision's ResNet-18 (or -34, -50) adapted to small images, as in CIFAR papers.

    The ImageNet stem (7x7 conv with stride 2, then a 3x3 max-pool: 4x smaller) would shrink a
    16x16 digit to 4x4 before the first residual stage; here it is a 3x3 conv with stride 1 and
    no max-pool, so ``layer1`` sees the full image and ``layer2..4`` halve it (16 -> 8 -> 4 -> 2).
    ``width`` is the channel count of ``layer1`` (64 in the original; the stages use
    ``width, 2w, 4w, 8w``): ``width=16`` has 1/16 of the compute, enough for digits on a CPU.
    ``[B, in_chans, S, S] -> [B, num_classes]``; module names are torchvision's (``conv1``, ``bn1``,
    ``layer1``..``layer4``, ``fc``), so :func:`vit_lesson.hybrid.resnet_stem` can slice it.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    layers = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}
    if depth not in layers:
        raise ValueError(f"small_resnet builds ResNet-18, -34 or -50, got depth={depth}.")
    block = Bottleneck if depth == 50 else BasicBlock
    if width < 1:
        raise ValueError(f"width is layer1's channel count (64 in ResNet-18), got {width}.")
    model = ResNet(block, layers[depth], num_classes=num_classes)
    # Rebuild the stages at the chosen width with torchvision's own builder (_make_layer).
    model.inplanes = width
    model.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.maxpool = nn.Identity()
    for i, blocks in enumerate(layers[depth]):
        setattr(model, f"layer{i + 1}", model._make_layer(block, width * 2 ** i, blocks, stride=1 if i == 0 else 2))
    model.fc = nn.Linear(8 * width * block.expansion, num_classes)
    for module in model.modules():  # torchvision's init, applied again to the rebuilt layers
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight), nn.init.zeros_(module.bias)
    return model


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
