"""Exercise checks, one module per notebook (a long one split by concern, its answer keys in ``*_keys``).

``from vit_lesson import checks; checks.check_patchify(patchify)``. The framework (how a check
reports, how it recognises common mistakes) is in :mod:`vit_lesson.checks.core`.
"""

from .core import *  # noqa: F401,F403,I001 - in the lessons' order, the order the exercises register
from .core import CheckFailed, CheckResult, call, check_mirror, exercise, expect_close, expect_tensor  # noqa: F401
from .patches import *  # noqa: F401,F403
from .patches_conv import *  # noqa: F401,F403
from .embeddings import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .block import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .training_groups import *  # noqa: F401,F403
from .visualize import *  # noqa: F401,F403
from .distill import *  # noqa: F401,F403
from .hybrid import *  # noqa: F401,F403
from .capstone_pieces import *  # noqa: F401,F403
from .capstone_vit import *  # noqa: F401,F403
from .capstone import *  # noqa: F401,F403


def find_check(name: str):
    """The exercise check called ``name`` (``"check_patchify"``), or None: every check module is
    imported above, so the registry ``CHECKS`` is complete here."""
    return next((check for check in CHECKS.values() if check.__name__ == name), None)  # noqa: F405
