"""One UNet training step in PyTorch (the book's UNetWrapper from tests/oracle/nn_unet.py, Dice +
8·FN loss, Adam), batch of 7×64×64, like `luna-torch bench-unet-step`. Usage: unet_step.py BATCH THREADS STEPS"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
from nn_unet import UNetWrapper, dice_loss  # noqa: E402


def main():
    batch, threads, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = UNetWrapper()
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.randn(batch, 7, 64, 64) * 300
    y = (torch.rand(batch, 1, 64, 64) > 0.9).float()

    def step():
        p = m(x)
        loss = dice_loss(p, y).mean() + 8 * dice_loss(p * y, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"pytorch unet train step: cpu, batch {batch}, threads {threads}: {(time.perf_counter() - t0) / steps:.4f} s/step")


if __name__ == "__main__":
    main()
