"""Oracle: the book's LunaModel (p2ch14/model.py) in PyTorch loads luna's safetensors.

Usage: nn_model.py <dir>. Reads <dir>/model.safetensors (state dict written by luna before any
forward), <dir>/input.safetensors {"x"}; writes <dir>/torch_out.safetensors with eval-mode
logits/probs, and train-mode logits plus the BatchNorm running stats after one train forward.
"""
import sys

import torch
from torch import nn

import nn_st


class LunaBlock(nn.Module):
    def __init__(self, in_channels, conv_channels):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, conv_channels, kernel_size=3, padding=1, bias=True)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(conv_channels, conv_channels, kernel_size=3, padding=1, bias=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(2, 2)

    def forward(self, x):
        return self.maxpool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


class LunaModel(nn.Module):
    def __init__(self, in_channels=1, conv_channels=8):
        super().__init__()
        self.tail_batchnorm = nn.BatchNorm3d(1)
        self.block1 = LunaBlock(in_channels, conv_channels)
        self.block2 = LunaBlock(conv_channels, conv_channels * 2)
        self.block3 = LunaBlock(conv_channels * 2, conv_channels * 4)
        self.block4 = LunaBlock(conv_channels * 4, conv_channels * 8)
        self.head_linear = nn.Linear(1152, 2)
        self.head_activation = nn.Softmax(dim=1)

    def forward(self, x):
        b = self.block4(self.block3(self.block2(self.block1(self.tail_batchnorm(x)))))
        logits = self.head_linear(b.view(b.size(0), -1))
        return logits, self.head_activation(logits)


def main():
    d = sys.argv[1]
    torch.set_num_threads(2)
    sd = {k: torch.from_numpy(v) for k, v in nn_st.load(f"{d}/model.safetensors").items()}
    m = LunaModel()
    m.load_state_dict(sd, strict=True)  # exact key set, shapes and dtypes
    x = torch.from_numpy(nn_st.load(f"{d}/input.safetensors")["x"])
    out = {}
    m.eval()
    with torch.no_grad():
        lg, pr = m(x)
        out["eval_logits"], out["eval_probs"] = lg.numpy(), pr.numpy()
        m.train()
        lg, _ = m(x)
        out["train_logits"] = lg.numpy()
    out["running_mean"] = m.tail_batchnorm.running_mean.numpy()
    out["running_var"] = m.tail_batchnorm.running_var.numpy()
    out["num_batches_tracked"] = m.tail_batchnorm.num_batches_tracked.numpy().reshape(1)
    nn_st.save(f"{d}/torch_out.safetensors", out)


if __name__ == "__main__":
    main()
