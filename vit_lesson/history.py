"""What a training run records: one row per finished epoch, and the table the command line prints.

The table pads by terminal columns, not characters, so a translated header (a Chinese character
takes two columns) keeps the columns aligned.
"""

from __future__ import annotations

import unicodedata

from .i18n import _

__all__ = ["History"]


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes (a Chinese character takes two)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int, align: str = ">") -> str:
    """``text`` padded with spaces to ``width`` terminal columns, right (``>``) or left (``<``) aligned."""
    fill = " " * max(0, width - _columns(text))
    return fill + text if align == ">" else text + fill


class History(list):
    """One dict per finished epoch: ``epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds``."""

    def column(self, key: str) -> list:
        return [row[key] for row in self]

    def best(self, key: str = "val_acc") -> dict:
        """The epoch with the highest ``key`` (the first one, on ties)."""
        return max(self, key=lambda row: row[key]) if self else {}

    def table(self) -> str:
        """The history as a fixed-width text table."""
        header = [(_("epoch"), 5), (_("train loss"), 10), (_("train acc"), 9), (_("val loss"), 8),
                  (_("val acc"), 8), (_("lr"), 9), (_("seconds"), 7)]
        widths = [max(width, _columns(name)) for name, width in header]  # a translated name may be wider
        lines = [" ".join(_pad(name, width) for (name, _width), width in zip(header, widths))]
        for r in self:
            cells = (f"{r['epoch']}", f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['val_loss']:.4f}",
                     f"{r['val_acc']:.2%}", f"{r['lr']:.2e}", f"{r['seconds']:.1f}")
            lines.append(" ".join(_pad(cell, width) for cell, width in zip(cells, widths)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs)" if not self else self.table()
