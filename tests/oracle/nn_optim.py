"""Oracle: torch.optim.SGD / Adam steps on a tiny model, same data as luna's test.

Usage: nn_optim.py <dir> <steps>. Reads <dir>/optim_in.safetensors {"w" (3,4), "b" (3), "x" (5,4),
"t" (5,3)} as float64; loss = mean((tanh(x @ w.T + b) - t)^2). For each config runs
<steps> steps and writes <dir>/optim_torch.safetensors {"<cfg>.w", "<cfg>.b"}.
"""
import sys

import torch

import nn_st

CONFIGS = {
    "sgd_mom": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    "sgd_plain": lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=1e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.02),
}


def loss_fn(w, b, x, t):
    y = x @ w.T + b
    return ((torch.tanh(y) - t) ** 2).mean()


def main():
    d, steps = sys.argv[1], int(sys.argv[2])
    inp = {k: torch.from_numpy(v).double() for k, v in nn_st.load(f"{d}/optim_in.safetensors").items()}
    out = {}
    for name, make in CONFIGS.items():
        w = inp["w"].clone().requires_grad_(True)
        b = inp["b"].clone().requires_grad_(True)
        opt = make([w, b])
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(w, b, inp["x"], inp["t"]).backward()
            opt.step()
        out[f"{name}.w"] = w.detach().numpy()
        out[f"{name}.b"] = b.detach().numpy()
    nn_st.save(f"{d}/optim_torch.safetensors", out)


if __name__ == "__main__":
    main()
