"""Oracle for luna's segmentation layer: the book's UNetWrapper (p2ch13/model.py over jvanvugt's
pytorch-unet with average pooling), its Dice + 8·FN loss, and the 2-D augmentation, in PyTorch.

Usage: nn_unet.py model|loss|augment <dir>  (inputs/outputs as safetensors in <dir>)
"""
import sys

import torch
import torch.nn.functional as F
from torch import nn

import nn_st


class UNetConvBlock(nn.Module):
    def __init__(self, in_size, out_size):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_size, out_size, kernel_size=3, padding=1), nn.ReLU(), nn.BatchNorm2d(out_size),
            nn.Conv2d(out_size, out_size, kernel_size=3, padding=1), nn.ReLU(), nn.BatchNorm2d(out_size))

    def forward(self, x):
        return self.block(x)


class UNetUpBlock(nn.Module):
    def __init__(self, in_size, out_size):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2)
        self.conv_block = UNetConvBlock(in_size, out_size)

    def forward(self, x, bridge):
        return self.conv_block(torch.cat([self.up(x), bridge], 1))


class UNet(nn.Module):
    def __init__(self, in_channels=7, n_classes=1, depth=3, wf=4):
        super().__init__()
        prev = in_channels
        self.down_path = nn.ModuleList()
        for i in range(depth):
            self.down_path.append(UNetConvBlock(prev, 2 ** (wf + i)))
            prev = 2 ** (wf + i)
        self.up_path = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.up_path.append(UNetUpBlock(prev, 2 ** (wf + i)))
            prev = 2 ** (wf + i)
        self.last = nn.Conv2d(prev, n_classes, kernel_size=1)

    def forward(self, x):
        blocks = []
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i != len(self.down_path) - 1:
                blocks.append(x)
                x = F.avg_pool2d(x, 2)
        for i, up in enumerate(self.up_path):
            x = up(x, blocks[-i - 1])
        return self.last(x)


class UNetWrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_batchnorm = nn.BatchNorm2d(7)
        self.unet = UNet()
        self.final = nn.Sigmoid()

    def forward(self, x):
        return self.final(self.unet(self.input_batchnorm(x)))


def dice_loss(pred, label, epsilon=1):
    dice_label = label.sum(dim=[1, 2, 3])
    dice_pred = pred.sum(dim=[1, 2, 3])
    dice_correct = (pred * label).sum(dim=[1, 2, 3])
    return 1 - (2 * dice_correct + epsilon) / (dice_pred + dice_label + epsilon)


def main():
    mode, d = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    out = {}
    if mode == "model":
        sd = {k: torch.from_numpy(v) for k, v in nn_st.load(f"{d}/model.safetensors").items()}
        m = UNetWrapper()
        m.load_state_dict(sd, strict=True)
        x = torch.from_numpy(nn_st.load(f"{d}/input.safetensors")["x"])
        m.eval()
        with torch.no_grad():
            out["eval"] = m(x).numpy()
            m.train()
            out["train"] = m(x).numpy()
        out["running_mean"] = m.input_batchnorm.running_mean.numpy()
        out["params"] = torch.tensor([sum(p.numel() for p in m.parameters())]).numpy()
    elif mode == "loss":
        t = nn_st.load(f"{d}/input.safetensors")
        pred = torch.from_numpy(t["pred"]).requires_grad_(True)
        label = torch.from_numpy(t["label"])
        loss = dice_loss(pred, label).mean() + 8 * dice_loss(pred * label, label).mean()
        loss.backward()
        out["loss"] = loss.detach().reshape(1).numpy()
        out["grad"] = pred.grad.numpy()
    elif mode == "augment":
        t = nn_st.load(f"{d}/input.safetensors")
        x, label, theta = (torch.from_numpy(t[k]) for k in ("x", "label", "theta"))
        grid = F.affine_grid(theta, list(x.size()), align_corners=False)
        out["x"] = F.grid_sample(x, grid, padding_mode="border", align_corners=False).numpy()
        lg = F.grid_sample(label.to(torch.float32), grid, padding_mode="border", align_corners=False)
        out["label"] = (lg > 0.5).to(torch.float32).numpy()
    elif mode == "segment":
        # whole-CT inference as segment does it, on luna's own prob volumes: every slice with
        # 3 context slices on each side (clamped), HU clipped to +-1000, eval mode.
        import glob
        import os

        import h5py
        import hdf5plugin  # noqa: F401
        import numpy as np
        import SimpleITK as sitk

        sd = {k: torch.from_numpy(v) for k, v in nn_st.load(f"{d}/model.safetensors").items()}
        m = UNetWrapper()
        m.load_state_dict(sd, strict=True)
        m.eval()
        worst = 0
        for f in sorted(glob.glob(f"{sys.argv[3]}/probs/*.h5")):
            uid = os.path.basename(f)[:-3]
            mhd = glob.glob(os.path.join(sys.argv[4], "**", uid + ".mhd"), recursive=True)[0]
            hu = np.clip(sitk.GetArrayFromImage(sitk.ReadImage(mhd)).astype(np.float32), -1000, 1000)
            n = hu.shape[0]
            with h5py.File(f, "r") as h:
                ours = h["prob"][...].astype(np.int32)
            r, cc = hu.shape[1], hu.shape[2]
            pr, pc = -(-r // 4) * 4, -(-cc // 4) * 4  # pad to multiples of 4 with air
            padded = np.full((n, pr, pc), -1000, dtype=np.float32)
            padded[:, :r, :cc] = hu
            with torch.no_grad():
                for c in list(range(min(n, 6))) + list(range(max(n - 6, 6), n)):  # both ends
                    idx = [min(max(c + j, 0), n - 1) for j in range(-3, 4)]
                    p = m(torch.from_numpy(padded[idx][None]))[0, 0].numpy()[:r, :cc]
                    q = np.round(np.clip(p, 0, 1) * 255).astype(np.int32)
                    worst = max(worst, int(np.abs(q - ours[c]).max()))
        out["max_byte_diff"] = np.array([worst], dtype=np.int64)
    nn_st.save(f"{d}/torch_out.safetensors", out)


if __name__ == "__main__":
    main()
