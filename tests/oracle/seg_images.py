"""Oracle for train_segmentation's prediction images (book p2ch13 `logImages`).

TensorBoard's own EventAccumulator reads the images luna logged, PIL decodes the PNGs, and
every pixel is compared with the book's overlay recomputed here in numpy: the validation slices
read with h5py from the seg_dataset, the model luna saved loaded into the PyTorch UNet of
nn_unet.py (eval mode), prediction = p > 0.5, then

    image = grey (hu/2000 + 0.5) in all channels; R += FP; R += FN; G += FN * 0.5; G += TP
    image *= 0.5; clip to [0, 1]; bytes = (image * 255).clip(0, 255).astype(uint8)

(the book's code followed by what SummaryWriter.add_image does with float HWC images), and the
epoch-1 label image = grey, G += label. Slices: 6 per series at k*(n-1)//5 of its n stored
validation slices, first 12 series.

Usage: seg_images.py <tensorboard val dir> <model.safetensors> <seg_dataset dir> <images dir>
Prints JSON with tag counts, mismatching pixel counts and the TP/FN/FP pixel totals.
"""
import glob
import io
import json
import os
import sys

import h5py
import hdf5plugin  # noqa: F401  (zstd filter)
import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nn_st
from nn_unet import UNetWrapper


def decode(png_bytes):
    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))


def to_bytes(image):
    image = image * 0.5
    image = np.clip(image, 0, 1)
    return (image * 255).clip(0, 255).astype(np.uint8)


def main():
    tb_dir, weights, seg_dir, img_dir = sys.argv[1:5]
    torch.set_num_threads(2)
    acc = EventAccumulator(tb_dir, size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()["images"]
    events = {t: acc.Images(t) for t in tags}
    last_step = max(e.step for evs in events.values() for e in evs)
    first_step = min(e.step for evs in events.values() for e in evs)

    m = UNetWrapper()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in nn_st.load(weights).items()}, strict=True)
    m.eval()

    out = {"tags": len(tags), "pred_images": 0, "label_images": 0, "pred_mismatch": 0,
           "label_mismatch": 0, "png_mismatch": 0, "tp": 0, "fn": 0, "fp": 0,
           "label_steps": sorted({e.step for t in tags if "_label_" in t for e in events[t]}),
           "steps": sorted({e.step for evs in events.values() for e in evs})}
    series = []
    for f in sorted(glob.glob(os.path.join(seg_dir, "seg", "*.h5"))):
        with h5py.File(f, "r") as h:
            if h["val_input"].shape[0] > 0:
                series.append((h["val_input"][...].astype(np.float32), h["val_label"][...].astype(np.float32)))
    for s, (inp, lab) in enumerate(series[:12]):
        n = inp.shape[0]
        picks = []
        for k in range(6):
            i = k * (n - 1) // 5
            if i not in [p for _, p in picks]:
                picks.append((k, i))
        r, c = inp.shape[2], inp.shape[3]
        pr, pc = -(-r // 4) * 4, -(-c // 4) * 4
        x = np.full((len(picks), inp.shape[1], pr, pc), -1000, dtype=np.float32)
        y = np.zeros((len(picks), pr, pc), dtype=np.float32)
        for j, (_, i) in enumerate(picks):
            x[j, :, :r, :c] = inp[i]
            y[j, :r, :c] = lab[i]
        with torch.no_grad():
            prob = m(torch.from_numpy(x))[:, 0].numpy()
        for j, (k, _) in enumerate(picks):
            ct = x[j, x.shape[1] // 2] / 2000 + 0.5
            pred = prob[j] > 0.5
            label = y[j] > 0.5
            tp, fn, fp = pred & label, ~pred & label, pred & ~label
            out["tp"] += int(tp.sum())
            out["fn"] += int(fn.sum())
            out["fp"] += int(fp.sum())
            img = np.zeros((pr, pc, 3), dtype=np.float32)
            img[:, :, :] = ct[:, :, None]
            img[:, :, 0] += fp
            img[:, :, 0] += fn
            img[:, :, 1] += fn * 0.5
            img[:, :, 1] += tp
            want = to_bytes(img)
            tag = f"val/{s}_prediction_{k}"
            got = [e for e in events.get(tag, []) if e.step == last_step]
            if len(got) != 1:
                out["pred_mismatch"] += want.shape[0] * want.shape[1]
                continue
            out["pred_images"] += 1
            tb = decode(got[0].encoded_image_string)
            out["pred_mismatch"] += int((tb != want).any(axis=2).sum()) if tb.shape == want.shape else tb.size
            png = decode(open(os.path.join(img_dir, f"{s}_prediction_{k}.png"), "rb").read())
            out["png_mismatch"] += int((png != tb).any(axis=2).sum()) if png.shape == tb.shape else png.size
            lab_img = np.zeros((pr, pc, 3), dtype=np.float32)
            lab_img[:, :, :] = ct[:, :, None]
            lab_img[:, :, 1] += label
            got = [e for e in events.get(f"val/{s}_label_{k}", []) if e.step == first_step]
            if len(got) == 1:
                out["label_images"] += 1
                tb = decode(got[0].encoded_image_string)
                want = to_bytes(lab_img)
                out["label_mismatch"] += int((tb != want).any(axis=2).sum()) if tb.shape == want.shape else tb.size
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
