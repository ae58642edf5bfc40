"""Reference values for tests/parity/autograd.lua, computed by PyTorch 2.11.0.

Writes autograd.safetensors into the folder given as the first argument: randn/rand streams
after manual_seed, gradients of a small MLP, of each activation and of each loss, and
clip_grad_norm's result. Inputs are saved beside the expected outputs so moontune computes
on the same numbers.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

out = {}

# Same seed, same random numbers.
torch.manual_seed(0)
out["randn_seed0"] = torch.randn(4, 3)
torch.manual_seed(1234)
out["randn_seed1234"] = torch.randn(7)
out["rand_after"] = torch.rand(5)
out["randint_after"] = torch.randint(0, 100, (6,))

g = torch.Generator().manual_seed(1)


def leaf(*shape):
    return torch.randn(*shape, generator=g).requires_grad_()


# A small MLP: linear → gelu → linear → cross-entropy.
x, w1, b1, w2, b2 = leaf(5, 4), leaf(8, 4), leaf(8), leaf(3, 8), leaf(3)
target = torch.tensor([0, 2, 1, 2, 0])
loss = F.cross_entropy(F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2), target)
loss.backward()
for name, t in [("x", x), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]:
    out[f"mlp.{name}"] = t.detach()
    out[f"mlp.{name}.grad"] = t.grad
out["mlp.target"] = target
out["mlp.loss"] = loss.detach()

# Activations: gradient of sum(act(a) * weights).
a = torch.randn(3, 6, generator=g)
weights = torch.randn(3, 6, generator=g)
out["act.input"], out["act.weights"] = a, weights
activations = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
    "softmax": lambda t: torch.softmax(t, -1),
    "log_softmax": lambda t: torch.log_softmax(t, -1),
    "sqrt_abs": lambda t: torch.sqrt(t.abs() + 0.5),
    "rsqrt_abs": lambda t: torch.rsqrt(t.abs() + 0.5),
}
for name, fn in activations.items():
    t = a.clone().requires_grad_()
    y = fn(t)
    (y * weights).sum().backward()
    out[f"act.{name}.value"] = y.detach()
    out[f"act.{name}.grad"] = t.grad

# Losses and their gradients.
logits = torch.randn(6, 5, generator=g)
labels = torch.tensor([0, 4, -100, 2, 2, 1])
out["loss.logits"], out["loss.labels"] = logits, labels
ce_cases = {
    "ce_mean": dict(),
    "ce_sum": dict(reduction="sum"),
    "ce_smooth": dict(label_smoothing=0.1),
    "ce_ignore_7": dict(ignore_index=4),
}
for name, kwargs in ce_cases.items():
    t = logits.clone().requires_grad_()
    lbl = labels.clone() if name != "ce_ignore_7" else labels.clamp(min=0)
    value = F.cross_entropy(t, lbl, **kwargs)
    value.backward()
    out[f"loss.{name}.value"] = value.detach()
    out[f"loss.{name}.grad"] = t.grad
t = logits.clone().requires_grad_()
none = F.cross_entropy(t, labels, reduction="none")
none.sum().backward()
out["loss.ce_none.value"], out["loss.ce_none.grad"] = none.detach(), t.grad
pred, goal = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
out["loss.pred"], out["loss.goal"] = pred, goal
for reduction in ["mean", "sum"]:
    t = pred.clone().requires_grad_()
    value = F.mse_loss(t, goal, reduction=reduction)
    value.backward()
    out[f"loss.mse_{reduction}.value"] = value.detach()
    out[f"loss.mse_{reduction}.grad"] = t.grad

# The other functional ops: each applied to a leaf, its value and the gradient of a weighted sum.
x2 = torch.randn(4, 6, generator=g)
probs = torch.rand(4, 6, generator=g).clamp(0.05, 0.95)
binary = (torch.rand(4, 6, generator=g) > 0.5).float()
pos_weight = torch.rand(6, generator=g) + 0.5
classes = torch.tensor([0, 5, 2, -100])
target_dist = torch.softmax(torch.randn(4, 6, generator=g), -1)
other = torch.randn(4, 6, generator=g)
batch1, batch2 = torch.randn(2, 4, 3, generator=g), torch.randn(2, 3, 6, generator=g)
out.update({"fn.x": x2, "fn.probs": probs, "fn.binary": binary, "fn.pos_weight": pos_weight, "fn.classes": classes,
            "fn.target_dist": target_dist, "fn.other": other, "fn.batch1": batch1, "fn.batch2": batch2})
functional = {
    "normalize": lambda t: F.normalize(t, dim=1),
    "normalize_p1_dim0": lambda t: F.normalize(t, p=1.0, dim=0),
    "cosine_similarity": lambda t: F.cosine_similarity(t, other, dim=1),
    "bce_logits": lambda t: F.binary_cross_entropy_with_logits(t, binary, pos_weight=pos_weight),
    "bce_logits_none": lambda t: F.binary_cross_entropy_with_logits(t, binary, reduction="none"),
    "bce": lambda t: F.binary_cross_entropy(torch.sigmoid(t), binary),
    "nll": lambda t: F.nll_loss(torch.log_softmax(t, -1), classes),
    "nll_sum": lambda t: F.nll_loss(torch.log_softmax(t, -1), classes, reduction="sum"),
    "kl_batchmean": lambda t: F.kl_div(torch.log_softmax(t, -1), target_dist, reduction="batchmean"),
    "kl_log_target": lambda t: F.kl_div(torch.log_softmax(t, -1), target_dist.log(), reduction="sum", log_target=True),
    "pad_constant": lambda t: F.pad(t, (1, 2), value=0.5),
    "pad_reflect": lambda t: F.pad(t.unsqueeze(0), (2, 1), mode="reflect"),
    "baddbmm": lambda t: torch.baddbmm(t.view(1, 4, 6), batch1, batch2, beta=0.5, alpha=2.0),
    "einsum": lambda t: torch.einsum("ij,kj->ik", t, other),
    "outer": lambda t: torch.outer(t[0], t[1]),
}
for name, fn in functional.items():
    t = x2.clone().requires_grad_()
    y = fn(t)
    y_weights = torch.randn(y.shape, generator=g)
    (y * y_weights).sum().backward()
    out[f"fn.{name}.value"], out[f"fn.{name}.weights"], out[f"fn.{name}.grad"] = y.detach(), y_weights, t.grad
out["fn.linspace"], out["fn.logspace"] = torch.linspace(-1, 2, 7), torch.logspace(0, 3, 4, base=2.0)
out["fn.one_hot"] = F.one_hot(torch.tensor([3, 0, 2]), 5)

# clip_grad_norm_ over two parameters' gradients.
p1, p2 = leaf(3, 4), leaf(5)
((p1 * 3).sum() + (p2 ** 2).sum()).backward()
out["clip.p1"], out["clip.p2"] = p1.detach(), p2.detach()
total = torch.nn.utils.clip_grad_norm_([p1, p2], 2.0)
out["clip.total"] = total
out["clip.p1.grad"], out["clip.p2.grad"] = p1.grad, p2.grad

save_file({k: v.contiguous() for k, v in out.items()}, f"{sys.argv[1]}/autograd.safetensors")
