"""Reference trajectories for tests/parity/optim.lua, computed by PyTorch 2.11.0.

Writes optim.safetensors into the folder given as the first argument: a linear least-squares
problem (W0, b0, X, Y) and, for each optimizer configuration and each of torch.optim's three
implementations (single-tensor, foreach, fused), W and b after each of 10 steps.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

g = torch.Generator().manual_seed(2)
W0, b0 = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
X, Y = torch.randn(8, 4, generator=g), torch.randn(8, 3, generator=g)
out = {"W0": W0, "b0": b0, "X": X, "Y": Y}

configs = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    "adam_amsgrad": (torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "adamw_groups": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
}

kernels = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}

for name, (cls, kwargs) in configs.items():
    for kernel, choice in kernels.items():
        W, b = W0.clone().requires_grad_(), b0.clone().requires_grad_()
        if name == "adamw_groups":
            params = [{"params": [W], "lr": 0.02}, {"params": [b], "weight_decay": 0.0}]
        else:
            params = [W, b]
        opt = cls(params, **choice, **kwargs)
        for step in range(1, 11):
            opt.zero_grad()
            F.mse_loss(F.linear(X, W, b), Y).backward()
            opt.step()
            out[f"{name}.{kernel}.W.{step}"] = W.detach().clone()
            out[f"{name}.{kernel}.b.{step}"] = b.detach().clone()

save_file(out, f"{sys.argv[1]}/optim.safetensors")
