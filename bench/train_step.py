"""PyTorch twin of luna's `nn::bench::bench_train_step`: mean seconds per LunaModel training step.

Usage: python bench/train_step.py [batch=24] [threads=2] [steps=10] [device=cpu|cuda]
Same model (book LunaModel, 32x48x48 crops), random batch scaled by 300 HU, per-sample
cross-entropy mean, SGD lr 1e-3 wd 1e-4; two warm-up steps excluded.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
from nn_model import LunaModel  # noqa: E402


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    dev = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = LunaModel().to(dev)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(batch, 1, 32, 48, 48, device=dev) * 300.0
    y = torch.arange(batch, device=dev) % 2

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad()
        logits, _ = m(x)
        F.cross_entropy(logits, y, reduction="none").mean().backward()
        opt.step()

    step()
    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    per = (time.perf_counter() - t0) / steps
    print(f"pytorch train step: {dev.type}, batch {batch}, threads {threads}: {per:.4f} s/step")


if __name__ == "__main__":
    main()
