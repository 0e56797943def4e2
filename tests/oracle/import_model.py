"""Oracle for `import_model`: PyTorch writes checkpoints of the book's two models in every form
luna imports, and the models' outputs on random inputs, which luna's imported models must
reproduce. Also writes the bad files of the error tests (a malicious pickle among them).

The architectures are the book's classes (p2ch14 LunaModel, p2ch13 UNetWrapper over
jvanvugt's pytorch-unet with average pooling) as the other nn oracles define them.

Usage: import_model.py models <dir>: luna_*.{state,pt,safetensors}, unet_*.*, and
         out.safetensors with x_luna (100,1,32,48,48), luna_logits, luna_probs, x_unet
         (100,7,32,32), unet_probs;
       import_model.py bad <dir> <tag>: luna_plain.pt, luna16.pt (a LunaModel for 16^3 crops)
         and bad_*.* (luna_f16.pt / luna_bf16.pt: half-precision weights with
         their float32 values in luna_{f16,bf16}_ref.safetensors; bad_nan.pt: a NaN weight; <tag> names the file the malicious pickles would create).
"""
import os
import pickle
import sys

import torch

import nn_st
from nn_model import LunaModel
from nn_unet import UNetWrapper


def randomise(m, g):
    """Random weights and BatchNorm statistics, so every tensor matters in eval mode; the
    input BatchNorm's statistics are HU-like (mean about -300, std about 400), so that the
    outputs on the HU-like test inputs stay away from saturation."""
    with torch.no_grad():
        for name, t in m.state_dict().items():
            first = name.startswith(("tail_batchnorm.", "input_batchnorm."))
            if name.endswith("num_batches_tracked"):
                t.fill_(17)
            elif first and name.endswith("running_var"):
                t.copy_((torch.rand(t.shape, generator=g) + 0.5) * 400**2)
            elif first and name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 50 - 300)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 2 + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)


def strided(sd, name):
    """`name` as a non-contiguous view (transposed storage) at a non-zero storage offset."""
    t = sd[name]
    if t.dim() < 2:
        return
    flat_t = t.transpose(0, 1).contiguous().reshape(-1)
    big = torch.zeros(flat_t.numel() + 7)
    big[7:] = flat_t
    view = big[7:].view(t.transpose(0, 1).shape).transpose(0, 1)
    assert not view.is_contiguous() and view.storage_offset() == 7 and torch.equal(view, t)
    sd[name] = view


class Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


LEGACY = dict(_use_new_zipfile_serialization=False)


def models(d, g):
    luna, unet = LunaModel(), UNetWrapper()
    randomise(luna, g)
    randomise(unet, g)
    luna.eval()
    unet.eval()
    sd = luna.state_dict()
    legacy = LEGACY
    opt = torch.optim.SGD(luna.parameters(), lr=0.001, momentum=0.99)
    luna(torch.randn(2, 1, 32, 48, 48))[0].sum().backward()
    opt.step()
    luna.zero_grad()
    opt_state = opt.state_dict()
    # the book's training script: a dict with model_state and plain extras, legacy format
    book_sd = dict(sd)
    strided(book_sd, "head_linear.weight")
    strided(book_sd, "block2.conv1.weight")
    book = {"model_state": book_sd, "model_name": "LunaModel", "optimizer_state": opt_state,
            "optimizer_name": "SGD", "epoch": 3, "totalTrainingSamples_count": 150000,
            "sys_argv": ["training.py", "--epochs", "3"], "time": "2020-02-06 14:16:55", "ratio": 0.5,
            "flags": (True, None)}
    torch.save(book, f"{d}/luna_legacy.state", **legacy)
    torch.save(book, f"{d}/luna_zip_dict.pt")
    torch.save(sd, f"{d}/luna_zip.pt")
    torch.save({"module." + k: v for k, v in sd.items()}, f"{d}/luna_module_legacy.pt", **legacy)
    torch.save({k: (v.double() if v.is_floating_point() else v) for k, v in sd.items()}, f"{d}/luna_f64.pt")
    nn_st.save(f"{d}/luna.safetensors", {k: v.numpy() for k, v in sd.items()})
    usd = unet.state_dict()
    dp = torch.nn.DataParallel(unet).state_dict()
    assert all(k.startswith("module.") for k in dp)
    torch.save({"model_state": dp, "epoch": 7, "totalTrainingSamples_count": 3000,
                "sys_argv": ["seg.py"], "time": "now"}, f"{d}/unet_legacy.state", **legacy)
    torch.save(usd, f"{d}/unet_zip.pt")
    nn_st.save(f"{d}/unet.safetensors", {k: v.numpy() for k, v in usd.items()})
    x_luna = torch.randn(100, 1, 32, 48, 48, generator=g) * 400 - 300
    x_unet = torch.randn(100, 7, 32, 32, generator=g) * 400 - 300
    with torch.no_grad():
        logits, probs = luna(x_luna)
        uprobs = unet(x_unet)
    nn_st.save(f"{d}/out.safetensors", {"x_luna": x_luna.numpy(), "luna_logits": logits.numpy(),
                                        "luna_probs": probs.numpy(), "x_unet": x_unet.numpy(),
                                        "unet_probs": uprobs.numpy()})


def bad(d, g, tag):
    luna = LunaModel()
    randomise(luna, g)
    sd = luna.state_dict()
    legacy = LEGACY
    torch.save(sd, f"{d}/luna_plain.pt")
    small = LunaModel()
    small.head_linear = torch.nn.Linear(64, 2)
    randomise(small, g)
    torch.save(small.state_dict(), f"{d}/luna16.pt")
    for dt, tag_ in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
        # a variance of 400^2 HU^2 overflows float16 (max 65504): as PyTorch, luna would refuse it
        src = dict(sd, **{"tail_batchnorm.running_var": torch.tensor([900.0])})
        half = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in src.items()}
        torch.save(half, f"{d}/luna_{tag_}.pt", **legacy)
        nn_st.save(f"{d}/luna_{tag_}_ref.safetensors",
                   {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in half.items()
                    if k != "tail_batchnorm.num_batches_tracked"})
    nan = dict(sd)
    nan["block3.conv2.weight"] = nan["block3.conv2.weight"].clone()
    nan["block3.conv2.weight"][0, 0, 1, 1, 1] = float("nan")
    torch.save(nan, f"{d}/bad_nan.pt")
    bad_dtype = dict(sd)
    bad_dtype["block1.conv1.bias"] = bad_dtype["block1.conv1.bias"].to(torch.int32)
    torch.save(bad_dtype, f"{d}/bad_dtype.pt")
    torch.save({"model_state": sd, "x": Evil(f"/tmp/pwned-{tag}-legacy")}, f"{d}/bad_evil_legacy.state", **legacy)
    torch.save({"model_state": sd, "x": Evil(f"/tmp/pwned-{tag}-zip")}, f"{d}/bad_evil_zip.pt")
    with open(f"{d}/bad_plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f, protocol=2)
    torch.save({"epoch": 1, "name": "x"}, f"{d}/bad_nostate.pt")
    with open(f"{d}/bad_text.state", "w") as f:
        f.write("this is not a checkpoint\n")


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(20)
    if sys.argv[1] == "models":
        models(sys.argv[2], g)
    else:
        bad(sys.argv[2], g, sys.argv[3])


if __name__ == "__main__":
    main()
