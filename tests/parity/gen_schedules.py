"""Reference learning rates for tests/parity/schedules.lua, from PyTorch 2.11.0 and transformers.

Writes schedules.safetensors into the folder given as the first argument: for each schedule, the
lr of each of two parameter groups (initial lrs 0.5 and 0.05) at creation and after each of 25
scheduler steps, in float64.
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

makers = {
    "constant": lambda opt: get_constant_schedule_with_warmup(opt, num_warmup_steps=4),
    "linear": lambda opt: get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=20),
    "cosine": lambda opt: get_cosine_with_min_lr_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=20, min_lr_rate=0.1),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5),
}

out = {}
for name, make in makers.items():
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.5}, {"params": [params[1]], "lr": 0.05}])
    sched = make(opt)
    rows = []
    for _ in range(26):
        rows.append([group["lr"] for group in opt.param_groups])
        opt.step()
        sched.step()
    out[name] = torch.tensor(rows, dtype=torch.float64)

save_file(out, f"{sys.argv[1]}/schedules.safetensors")
