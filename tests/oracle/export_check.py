"""Oracle for `luna export`: PyTorch loads luna's exported files and runs them on luna's inputs.

Usage: export_check.py classifier|segmenter MODEL.ts.pt STATE.pt IO.safetensors
- MODEL.ts.pt: `torch.jit.load` (eval mode, as exported);
- STATE.pt: `torch.load` with PyTorch's default (weights_only=True: only tensors and plain
  containers), loaded into the book's own class (`nn_model.LunaModel` / `nn_unet.UNetWrapper`)
  with `load_state_dict(strict=True)`, eval mode;
- IO.safetensors: `x` and luna's outputs (`logits`, `probs` for the classifier; `probs` for the
  segmenter).
Prints JSON: max |diff| of each output against luna's, per source, and the key count.
"""
import json
import sys

import torch

import nn_st
from nn_model import LunaModel
from nn_unet import UNetWrapper


def main():
    kind, ts_path, sd_path, io_path = sys.argv[1:5]
    torch.set_num_threads(2)
    io = {k: torch.from_numpy(v) for k, v in nn_st.load(io_path).items()}
    x = io["x"]
    ts = torch.jit.load(ts_path)
    sd = torch.load(sd_path)
    model = LunaModel() if kind == "classifier" else UNetWrapper()
    model.load_state_dict(sd, strict=True)
    model.eval()
    out = {"keys": len(sd), "scale": float(io["probs"].abs().max())}
    with torch.no_grad():
        if kind == "classifier":
            for name, (logits, probs) in (("ts", ts(x)), ("sd", model(x))):
                out[f"{name}_logits"] = float((logits - io["logits"]).abs().max())
                out[f"{name}_probs"] = float((probs - io["probs"]).abs().max())
            out["scale"] = float(io["logits"].abs().max())
        else:
            for name, probs in (("ts", ts(x)), ("sd", model(x))):
                out[f"{name}_probs"] = float((probs - io["probs"]).abs().max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
