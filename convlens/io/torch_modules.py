"""The one torch module that ``to_torch`` needs beyond ``torch.nn``: a fixed axis permutation.

Imported only by ``convlens.io.to_torch`` / ``from_torch`` (it imports torch at the top).
"""

from __future__ import annotations

import torch

__all__ = ["Permute"]


class Permute(torch.nn.Module):
    """``x.permute(*dims)``: moves a channels_last tensor to channels first and back.

    Example:
        >>> Permute((0, 3, 1, 2))(torch.zeros(2, 5, 6, 3)).shape
        torch.Size([2, 3, 5, 6])
    """

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x):
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
