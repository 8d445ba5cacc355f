#!/usr/bin/python3
"""torch_reference.py: the PyTorch trajectories tests/test_optim_reference.c
checks shardfit's optimizers against.

The test must not need PyTorch, so this script runs once and its small text
output, tests/data/optim_reference.txt, is committed. Regenerate it (only when
a case is added or changed) with Debian's python3-torch:

    /usr/bin/python3 scripts/torch_reference.py      # from the repo root

Each case trains a tiny MLP, or a tiny CNN with batch norm, full-batch on 16
samples with one torch.optim optimizer (default flags: dampening 0, amsgrad
False, maximize False) and records the initial parameters, the data, the
loss of every step (computed before that step's update) and the final
parameters. Parameters are written in model.parameters() order, which is
shardfit's flat order: per layer the weight (dense (out, in), conv (out_c,
in_c, k, k)), then the bias. The CNN's buffers (per batchnorm layer
running_mean, running_var, num_batches_tracked) follow in model.buffers()
order, which is the order of shardfit's statistics. Floats are float32
written with 9 significant digits, so they read back bit for bit.

File format, whitespace-separated tokens, '#' starts a comment line:
    case NAME
    layers COUNT TOKEN...          shardfit's model.layers
    inputs D
    shape C H W                    optional: the image shape (C*H*W = D)
    set COUNT KEY=VALUE...         shardfit config assignments (sf_config_set)
    steps T
    x N  then N*D floats           row-major (N, D)
    labels N  then N class ids
    init P  then P floats
    loss T  then T floats          mean loss of each step, before its update
    params P  then P floats        after the last step
    stats S  then S floats         optional: the buffers after the last step
    end
"""
import os
import sys

import torch
from torch import nn

SAMPLES, FEATURES, CLASSES, STEPS = 16, 4, 3, 25

# name, hidden layer (units, activation), loss, optimizer, its settings.
# clip_norm is shardfit's optimizer.clip_norm (torch's clip_grad_norm_).
CASES = [
    ("sgd", (5, "tanh"), "cross_entropy", "sgd", dict(lr=0.1)),
    ("sgd_momentum", (5, "tanh"), "cross_entropy", "sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd_nesterov", (5, "tanh"), "cross_entropy", "sgd",
     dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd_momentum_weight_decay", (5, "tanh"), "cross_entropy", "sgd",
     dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("sgd_momentum_clip", (5, "tanh"), "cross_entropy", "sgd",
     dict(lr=0.1, momentum=0.9, clip_norm=0.2)),
    ("adam", (5, "tanh"), "cross_entropy", "adam", dict(lr=0.01)),
    ("adam_weight_decay", (5, "tanh"), "cross_entropy", "adam",
     dict(lr=0.01, weight_decay=0.01)),
    ("adamw", (5, "tanh"), "cross_entropy", "adamw", dict(lr=0.01, weight_decay=0.01)),
    ("adam_clip", (5, "tanh"), "cross_entropy", "adam", dict(lr=0.01, clip_norm=0.3)),
    ("mse_sgd_nesterov", (6, "relu"), "mse", "sgd",
     dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("mse_adamw", (6, "relu"), "mse", "adamw", dict(lr=0.01, weight_decay=0.01)),
]

# A tiny CNN with batch norm after conv (per channel) and after dense (per
# feature), on (2, 8, 7) images: shardfit's layers and the same in torch.
CNN_SHAPE = (2, 8, 7)
CNN_LAYERS = ["conv:4:3:1:1", "batchnorm", "relu", "maxpool:2", "conv:5:2",
              "batchnorm", "tanh", "flatten", "dense:6", "batchnorm", "relu",
              "dense:%d" % CLASSES]
CNN_CASES = [
    ("cnn_batchnorm_sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9)),
    # A bias just before a batchnorm has a zero gradient in exact arithmetic;
    # Adam turns its rounding noise (~1e-9) into full lr-sized steps whose
    # sign is noise. eps 1e-3 keeps those steps below 1e-7 and the others
    # (gradients ~1e-2) nearly as Adam's default makes them.
    ("cnn_batchnorm_adam", "adam", dict(lr=0.01, eps=1e-3)),
]


def cnn_model():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 2), nn.BatchNorm2d(5), nn.Tanh(), nn.Flatten(),
        nn.Linear(5 * 3 * 2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, CLASSES))


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
DEFAULTS = {"sgd": dict(momentum=0.0, weight_decay=0.0),
            "adam": dict(weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8),
            "adamw": dict(weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)}


def fmt(values):
    """float32 values, 9 significant digits: enough to round-trip."""
    return " ".join("%.9g" % v for v in values.detach().reshape(-1).tolist())


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run_case(out, name, hidden, loss_name, opt_name, settings, x, y):
    torch.manual_seed(1)  # the same initial weights for every case of a model
    if hidden == "cnn":
        model = cnn_model()
        layers, shape = CNN_LAYERS, CNN_SHAPE
        x = x.reshape((x.shape[0],) + CNN_SHAPE)
    else:
        units, act = hidden
        model = nn.Sequential(nn.Linear(FEATURES, units), ACTIVATIONS[act](),
                              nn.Linear(units, CLASSES))
        layers, shape = ["dense:%d" % units, act, "dense:%d" % CLASSES], None
    model.train()
    init = flat(model).clone()
    settings = dict(settings)
    clip_norm = settings.pop("clip_norm", 0.0)
    kwargs = dict(DEFAULTS[opt_name], **settings)
    opt = OPTIMIZERS[opt_name](model.parameters(), **kwargs)
    if loss_name == "cross_entropy":
        criterion, target = nn.CrossEntropyLoss(), y
    else:
        criterion = nn.MSELoss()
        target = nn.functional.one_hot(y, CLASSES).to(torch.float32)

    losses, clipped = [], 0
    for _ in range(STEPS):
        opt.zero_grad()
        loss = criterion(model(x), target)
        loss.backward()
        if clip_norm > 0:
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            clipped += int(norm.item() > clip_norm)
        opt.step()
        losses.append(loss.detach())
    if clip_norm > 0 and clipped == 0:
        sys.exit("case %s: clip_norm %g never clipped; lower it" % (name, clip_norm))

    assignments = ["model.loss=" + loss_name, "optimizer.name=" + opt_name,
                   "optimizer.lr=%r" % kwargs["lr"],
                   "optimizer.weight_decay=%r" % kwargs["weight_decay"],
                   "optimizer.clip_norm=%r" % clip_norm]
    if opt_name == "sgd":
        assignments += ["optimizer.momentum=%r" % kwargs["momentum"],
                        "optimizer.nesterov=%s" % str(kwargs.get("nesterov", False)).lower()]
    else:
        assignments += ["optimizer.beta1=%r" % kwargs["betas"][0],
                        "optimizer.beta2=%r" % kwargs["betas"][1],
                        "optimizer.eps=%r" % kwargs["eps"]]
    params = flat(model)
    print("case %s" % name, file=out)
    if clip_norm > 0:
        print("# clipped in %d of %d steps" % (clipped, STEPS), file=out)
    print("layers %d %s" % (len(layers), " ".join(layers)), file=out)
    print("inputs %d" % (x[0].numel()), file=out)
    if shape:
        print("shape %d %d %d" % shape, file=out)
    print("set %d %s" % (len(assignments), " ".join(assignments)), file=out)
    print("steps %d" % STEPS, file=out)
    print("x %d" % SAMPLES, file=out)
    for row in x:
        print(fmt(row), file=out)
    print("labels %d %s" % (SAMPLES, " ".join(str(v) for v in y.tolist())), file=out)
    print("init %d" % init.numel(), file=out)
    print(fmt(init), file=out)
    print("loss %d" % STEPS, file=out)
    print(fmt(torch.stack(losses)), file=out)
    print("params %d" % params.numel(), file=out)
    print(fmt(params), file=out)
    buffers = [b.detach().reshape(-1).to(torch.float32) for b in model.buffers()]
    if buffers:
        stats = torch.cat(buffers)
        print("stats %d" % stats.numel(), file=out)
        print(fmt(stats), file=out)
    print("end", file=out)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(SAMPLES, FEATURES, dtype=torch.float32)
    y = torch.randint(0, CLASSES, (SAMPLES,))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "data", "optim_reference.txt")
    tmp = path + ".tmp"
    with open(tmp, "w") as out:
        print("# optim_reference.txt: written by scripts/torch_reference.py "
              "(torch %s); regenerate, do not edit." % torch.__version__, file=out)
        for name, hidden, loss_name, opt_name, settings in CASES:
            run_case(out, name, hidden, loss_name, opt_name, settings, x, y)
        torch.manual_seed(2)
        xi = torch.randn((SAMPLES,) + CNN_SHAPE, dtype=torch.float32).reshape(SAMPLES, -1)
        for name, opt_name, settings in CNN_CASES:
            run_case(out, name, "cnn", "cross_entropy", opt_name, settings, xi, y)
    os.replace(tmp, path)
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
