"""The two pretexts' inputs and targets: hidden cells to inpaint, moved cells whose origin is to be found.

Both work on a `grid`×`grid` lattice of square cells. Randomness comes from a `torch.Generator` so a
step's batch is a pure function of (seed, step) and resuming repeats it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -1  # position target of cells that have no answer (hidden ones)


@dataclass
class PretextBatch:
    """inputs: what the encoder sees (N×3×H×W); hidden: 1 where pixels were hidden (N×1×H×W);
    origin: for every cell (raster order, N×G²) the cell its content came from, IGNORE for hidden cells;
    moved: True for cells whose content is not its own (N×G²) — the position loss is taken on these."""

    inputs: torch.Tensor
    hidden: torch.Tensor
    origin: torch.Tensor
    moved: torch.Tensor


def cells_to_pixels(cell_mask: torch.Tensor, size: int) -> torch.Tensor:
    """N×G² bool → N×1×size×size float (nearest upsampling of the lattice)."""
    n, g2 = cell_mask.shape
    g = int(round(g2 ** 0.5))
    grid = cell_mask.view(n, 1, g, g).float()
    return F.interpolate(grid, size=(size, size), mode="nearest")


def _to_cells(x: torch.Tensor, grid: int) -> torch.Tensor:
    """N×C×H×W → N×G²×C×p×p (raster order of cells)."""
    n, c, h, w = x.shape
    p = h // grid
    return x.view(n, c, grid, p, grid, p).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, p, p)


def _from_cells(cells: torch.Tensor, grid: int) -> torch.Tensor:
    n, _, c, p, _ = cells.shape
    return cells.view(n, grid, grid, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, grid * p, grid * p)


def make_pretext(x: torch.Tensor, grid: int, mask_ratio: float, shuffle_ratio: float,
                 generator: torch.Generator) -> PretextBatch:
    """Hide `mask_ratio` of the cells (set to 0, the normalisation mean) and permute `shuffle_ratio` of the rest.

    `x` is the normalised image batch; cells are chosen on the CPU generator, then moved to x's device.
    """
    n, _, h, w = x.shape
    if h != w or h % grid:
        raise ValueError(f"pretext needs square images divisible by the grid {grid}, got {h}×{w}")
    g2 = grid * grid
    n_hidden = max(1, int(round(mask_ratio * g2)))
    n_shuffled = int(round(shuffle_ratio * (g2 - n_hidden)))
    hidden_cells = torch.zeros(n, g2, dtype=torch.bool)
    source = torch.arange(g2).repeat(n, 1)
    for i in range(n):
        order = torch.randperm(g2, generator=generator)
        hidden_cells[i, order[:n_hidden]] = True
        if n_shuffled >= 2:
            chosen = order[n_hidden:n_hidden + n_shuffled]
            source[i, chosen] = chosen[torch.randperm(n_shuffled, generator=generator)]
    cells = _to_cells(x, grid)
    src = source.to(x.device)
    cells = torch.gather(cells, 1, src.view(n, g2, 1, 1, 1).expand_as(cells))
    hidden = hidden_cells.to(x.device)
    cells = cells * (~hidden).view(n, g2, 1, 1, 1)
    origin = torch.where(hidden, torch.full_like(src, IGNORE), src)
    moved = (src != torch.arange(g2, device=x.device)) & ~hidden
    return PretextBatch(_from_cells(cells, grid), cells_to_pixels(hidden, h), origin, moved)
