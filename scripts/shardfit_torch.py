"""shardfit_torch.py: shardfit's `model.layers` and PyTorch's nn.Sequential,
one to one, for scripts/torch-export and scripts/torch-import.

Token i of the layers string is the module named "LL_kind" (LL = i as two
digits, kind = the token's kind) of an nn.Sequential built from an
OrderedDict, so a checkpoint group /params/LL_kind/NAME is exactly the
state_dict key "LL_kind.NAME", and nothing is renamed:

    dense:U               nn.Linear(in, U)           weight (U, in), bias (U,)
    conv:F:K[:S[:P]]      nn.Conv2d(in_c, F, K, S, P) weight (F, in_c, K, K), bias
    maxpool:K[:S]         nn.MaxPool2d(K, S)          (S defaults to K)
    avgpool:K[:S]         nn.AvgPool2d(K, S)
    batchnorm             nn.BatchNorm1d after a dense layer (or on vectors),
                          nn.BatchNorm2d after conv or pooling: weight, bias,
                          running_mean, running_var, num_batches_tracked
    relu, tanh, sigmoid   nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    dropout:R             nn.Dropout(R)
    flatten               nn.Flatten()

shardfit flattens whatever reaches a dense layer (its input (N, H, W), or a
conv's output); nn.Linear does not, so a module "LL_flatten_in" (no
parameters, so no state_dict keys) goes before a dense layer unless a dense
or flatten layer came before it (on (N, D) vectors it changes nothing). The
module's input is then what shardfit's model sees: features * data.scale +
data.offset, as float32, (N, D) vectors or images (N, C, H, W) (a (N, H, W)
dataset is one channel: x.unsqueeze(1) for a conv-first model).

A state_dict made elsewhere may also use plain nn.Sequential indices ("0.weight",
"2.bias"): index i is token i. Input sizes (dense in, conv in_c, batchnorm
features) come from the weights, since the layers string does not hold them.
"""
from collections import OrderedDict

import numpy as np

FORMAT = "shardfit-checkpoint"
VERSION = 1

# The parts each kind with parameters stores, in shardfit's order.
PARTS = {
    "dense": ("weight", "bias"),
    "conv": ("weight", "bias"),
    "batchnorm": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
}
KINDS = ("dense", "conv", "maxpool", "avgpool", "batchnorm", "relu", "tanh",
         "sigmoid", "dropout", "flatten")


class LayersError(ValueError):
    """A layers string, checkpoint or state_dict that does not fit; the
    message names the layer, key or value."""


def parse_layers(text):
    """[(index, kind, args)] of a model.layers string; args are the numbers
    after the kind ("conv:32:3" -> (32, 3))."""
    out = []
    for i, token in enumerate(text.split()):
        kind, *rest = token.split(":")
        if kind not in KINDS:
            raise LayersError(f"layers: unknown layer '{token}' (one of {', '.join(KINDS)})")
        try:
            args = tuple(float(a) if kind == "dropout" else int(a) for a in rest)
        except ValueError:
            raise LayersError(f"layers: '{token}': bad number") from None
        want = {"dense": (1, 1), "conv": (2, 4), "maxpool": (1, 2), "avgpool": (1, 2),
                "dropout": (1, 1)}.get(kind, (0, 0))
        if not want[0] <= len(args) <= want[1]:
            raise LayersError(f"layers: '{token}': {kind} takes {want[0]} to {want[1]} "
                              f"numbers after the colon" if want[1] else
                              f"layers: '{token}': {kind} takes no arguments")
        out.append((i, kind, args))
    if not out:
        raise LayersError("layers: empty")
    return out


def name(index, kind):
    """The module and checkpoint-group name of token index: "02_dense"."""
    return f"{index:02d}_{kind}"


def module_code(layers, params):
    """[(module name, Python expression)] of the nn.Sequential for layers;
    params maps "LL_kind" to {part: array} and gives the input sizes."""
    out, spatial = [], None  # spatial: what flows is (N, C, H, W); None: unknown
    for i, kind, args in parse_layers(layers):
        n = name(i, kind)
        p = params.get(n)
        if kind in PARTS and p is None:
            raise LayersError(f"layer {n}: no weights for it")
        if kind == "dense":
            w = p["weight"]
            if w.ndim != 2 or w.shape[0] != args[0]:
                raise LayersError(f"layer {n}: weight {tuple(w.shape)} does not fit "
                                  f"dense:{args[0]} (expected ({args[0]}, in))")
            if spatial is not False:
                out.append((f"{i:02d}_flatten_in", "nn.Flatten()"))
            out.append((n, f"nn.Linear({w.shape[1]}, {w.shape[0]})"))
            spatial = False
        elif kind == "conv":
            f, k = args[0], args[1]
            s = args[2] if len(args) > 2 else 1
            pad = args[3] if len(args) > 3 else 0
            w = p["weight"]
            if w.ndim != 4 or w.shape[0] != f or w.shape[2:] != (k, k):
                raise LayersError(f"layer {n}: weight {tuple(w.shape)} does not fit "
                                  f"conv:{f}:{k} (expected ({f}, in_c, {k}, {k}))")
            out.append((n, f"nn.Conv2d({w.shape[1]}, {f}, {k}, stride={s}, padding={pad})"))
            spatial = True
        elif kind in ("maxpool", "avgpool"):
            k = args[0]
            s = args[1] if len(args) > 1 else k
            cls = "MaxPool2d" if kind == "maxpool" else "AvgPool2d"
            out.append((n, f"nn.{cls}({k}, stride={s})"))
            spatial = True
        elif kind == "batchnorm":
            c = p["weight"].shape[0]
            out.append((n, f"nn.BatchNorm{'2' if spatial else '1'}d({c})"))
        elif kind == "flatten":
            out.append((n, "nn.Flatten()"))
            spatial = False
        elif kind == "dropout":
            out.append((n, f"nn.Dropout({args[0]!r})"))
        else:
            out.append((n, {"relu": "nn.ReLU()", "tanh": "nn.Tanh()",
                            "sigmoid": "nn.Sigmoid()"}[kind]))
    return out


def sequential_source(layers, params):
    """The Python code of the module (its construction only)."""
    lines = ["model = nn.Sequential(OrderedDict(["]
    lines += [f"    ({n!r}, {expr})," for n, expr in module_code(layers, params)]
    lines.append("]))")
    return "\n".join(lines)


def build(layers, params):
    """The nn.Sequential for layers (weights not loaded)."""
    import torch
    from torch import nn
    env = {"nn": nn, "torch": torch, "OrderedDict": OrderedDict}
    exec(sequential_source(layers, params), env)
    return env["model"]


def fresh_sequential(layers, shape):
    """A freshly initialised nn.Sequential (PyTorch's own init) for a layers
    string and a (C, H, W) sample shape, for benchmarks that need the same
    network without a checkpoint: dense flattens what is not a vector."""
    import torch.nn as tnn
    mods = []
    c, h, w = shape
    for _, kind, a in parse_layers(layers):
        if kind == "dense":
            if h * w != 1:
                mods.append(tnn.Flatten())
            mods.append(tnn.Linear(c * h * w, a[0]))
            c, h, w = a[0], 1, 1
        elif kind == "flatten":
            mods.append(tnn.Flatten())
            c, h, w = c * h * w, 1, 1
        elif kind == "conv":
            f, k = a[0], a[1]
            s = a[2] if len(a) > 2 else 1
            p = a[3] if len(a) > 3 else 0
            mods.append(tnn.Conv2d(c, f, k, s, p))
            c, h, w = f, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind in ("maxpool", "avgpool"):
            k = a[0]
            s = a[1] if len(a) > 1 else k
            mods.append((tnn.MaxPool2d if kind == "maxpool" else tnn.AvgPool2d)(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "batchnorm":
            mods.append(tnn.BatchNorm2d(c) if h * w != 1 else tnn.BatchNorm1d(c))
        elif kind == "dropout":
            mods.append(tnn.Dropout(a[0]))
        else:
            mods.append({"relu": tnn.ReLU, "tanh": tnn.Tanh, "sigmoid": tnn.Sigmoid}[kind]())
    return tnn.Sequential(*mods)


def state_dict(params):
    """params ({"LL_kind": {part: array}}) as a state_dict of torch tensors."""
    import torch
    sd = OrderedDict()
    for group in sorted(params):
        for part, value in params[group].items():
            sd[f"{group}.{part}"] = torch.from_numpy(np.array(value))
    return sd


def params_from_state_dict(layers, sd):
    """The reverse: {"LL_kind": {part: array}} for the layers with
    parameters, from keys "LL_kind.part" or "i.part"; every key must be
    used, every part present."""
    params, used = {}, set()
    for i, kind, args in parse_layers(layers):
        if kind not in PARTS:
            continue
        n, p = name(i, kind), {}
        for part in PARTS[kind]:
            for key in (f"{n}.{part}", f"{i}.{part}"):
                if key in sd:
                    p[part] = sd[key].detach().cpu().numpy()
                    used.add(key)
                    break
            else:
                raise LayersError(f"layer {n}: the state_dict has no '{n}.{part}' "
                                  f"(nor '{i}.{part}'); it has: {', '.join(sd)}")
        params[n] = p
    extra = [k for k in sd if k not in used]
    if extra:
        raise LayersError(f"the state_dict has {', '.join(extra)}, which the layers "
                          f"'{layers}' do not take (token i is module i, or 'LL_kind')")
    module_code(layers, params)  # checks the shapes against the tokens
    return params


def read_checkpoint(path):
    """(layers, params, config text or "") of a shardfit checkpoint."""
    import h5py
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != FORMAT:
            raise LayersError(f"'{path}' is not a shardfit checkpoint (format {fmt!r})")
        if "layers" not in f.attrs:
            raise LayersError(f"'{path}' has no 'layers' attribute (a params-only "
                              f"file: pass its layers to torch-import's reverse)")
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
        layers = text(f.attrs["layers"])
        config = text(f.attrs["config"]) if "config" in f.attrs else ""
        params = {g: {p: f["params"][g][p][()] for p in f["params"][g]}
                  for g in f["params"]}
    return layers, params, config


def write_init(path, layers, params):
    """A params-only file usable as model.init_checkpoint: root attributes
    format, version and layers, and /params/LL_kind/part (float32, except
    num_batches_tracked: an int64 scalar as in PyTorch). Written to a
    temporary name and renamed."""
    import os
    import h5py
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = np.int64(VERSION)
            f.attrs["layers"] = layers
            g = f.create_group("params")
            for group in sorted(params):
                lg = g.create_group(group)
                for part, value in params[group].items():
                    dtype = np.int64 if part == "num_batches_tracked" else np.float32
                    lg.create_dataset(part, data=np.asarray(value, dtype=dtype))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
