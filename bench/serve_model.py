"""PyTorch twin of luna's `nn::bench::bench_infer`: mean milliseconds per crop of one eval-mode
LunaModel forward pass over a batch, in PyTorch's default layout (NCDHW) and in
channels_last_3d (what luna runs for batches of two or more crops on the CPU).

Usage: python bench/serve_model.py THREADS STEPS BATCH... -> one JSON line per batch size:
{"batch": B, "ncdhw_ms": .., "channels_last_ms": ..}. Two warm-up passes excluded; the two
layouts alternate step by step so machine noise hits both alike.
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
from nn_model import LunaModel  # noqa: E402


def forward(m, x):
    """The model's eval pass with `reshape` for the flattening (the book's `view` needs NCDHW)."""
    h = m.block4(m.block3(m.block2(m.block1(m.tail_batchnorm(x)))))
    return m.head_activation(m.head_linear(h.reshape(h.size(0), -1)))


def main():
    threads, steps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = LunaModel().eval()
    cl = LunaModel().eval().to(memory_format=torch.channels_last_3d)
    cl.load_state_dict(m.state_dict())
    for batch in (int(b) for b in sys.argv[3:]):
        x = torch.randn(batch, 1, 32, 48, 48) * 300.0
        xc = x.contiguous(memory_format=torch.channels_last_3d)
        t = {"ncdhw": 0.0, "cl": 0.0}
        with torch.no_grad():
            for _ in range(2):
                forward(m, x), forward(cl, xc)
            for _ in range(steps):
                for name, model, inp in (("ncdhw", m, x), ("cl", cl, xc)):
                    t0 = time.perf_counter()
                    forward(model, inp)
                    t[name] += time.perf_counter() - t0
        per = lambda s: round(1000 * s / (steps * batch), 2)  # noqa: E731
        print(json.dumps({"batch": batch, "ncdhw_ms": per(t["ncdhw"]), "channels_last_ms": per(t["cl"])}), flush=True)


if __name__ == "__main__":
    main()
