"""Oracle: torch F.affine_grid + F.grid_sample(border, align_corners=False) on given thetas.

Usage: nn_augment.py <dir>. Reads <dir>/aug_in.safetensors {"x" (N,1,D,H,W), "theta" (N,3,4)},
writes <dir>/aug_torch.safetensors {"y"}.
"""
import sys

import torch
import torch.nn.functional as F

import nn_st


def main():
    d = sys.argv[1]
    t = nn_st.load(f"{d}/aug_in.safetensors")
    x = torch.from_numpy(t["x"])
    theta = torch.from_numpy(t["theta"])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    nn_st.save(f"{d}/aug_torch.safetensors", {"y": y.numpy()})


if __name__ == "__main__":
    main()
