#!/bin/sh
# cli_torch.sh: weights in and out of PyTorch (scripts/torch-export,
# scripts/torch-import, Debian's python3-torch and python3-h5py), for an MLP
# and a CNN:
#  - out: a model trained by shardfit on (N, H, W) images is exported; the
#    module torch-export prints, with its weights, gives the probabilities
#    `shardfit predict` wrote, to 1e-5. MLP: flatten, dense, relu, dropout,
#    sigmoid; CNN: conv (padded), batchnorm 2d and 1d, maxpool, avgpool,
#    and in both directions a conv of 16 channels to 16, which shardfit
#    computes by Winograd's F(2x2, 3x3) (on a 5x5 map out, 10x10 in).
#  - in: an nn.Sequential initialised in PyTorch (a user's own, with plain
#    indices), imported, trained 3 steps by shardfit (SGD with momentum,
#    shuffle = false) equals PyTorch's own 3 steps to 1e-5, weights and
#    batchnorm running statistics alike. MLP: dense-first on images (the
#    implicit flatten), tanh, on 2 ranks; CNN on 1 rank.
#  - weights that do not fit the layers: exit 2 naming the layer.
# The CNN cases are skipped (said so) by a shardfit without conv layers; the
# mapping is then still checked in PyTorch alone. Ends "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
PY=/usr/bin/python3
S="$(pwd)/scripts"
cd "$tmp" || exit 1
MLP_IN="dense:16 tanh dense:3"
# (its second conv, 16 channels in and out, goes by Winograd's F(2x2, 3x3))
CNN_IN="conv:16:3:1:1 batchnorm relu conv:16:3:1:1 batchnorm relu maxpool:2 flatten dense:8 batchnorm tanh dense:2"

# One Python start: the data, the PyTorch models and their 3 steps, and the
# conv/pooling/batchnorm mapping in PyTorch alone.
SCRIPTS="$S" "$PY" - > "$tmp/out" 2>&1 <<'PY' || { bad "PyTorch side (data, models, 3 steps)"; summary; exit 1; }
import os, sys
import h5py, numpy as np, torch
from torch import nn
sys.path.insert(0, os.environ["SCRIPTS"])
import shardfit_torch as st

rng = np.random.default_rng(5)
x = rng.integers(0, 256, size=(200, 3, 4)).astype(np.uint8)
y = (x.reshape(200, -1)[:, :6].sum(1) > x.reshape(200, -1)[:, 6:].sum(1)).astype(np.int64)
y[x[:, 0, 0] > 200] = 2
img = rng.integers(0, 256, size=(120, 10, 10)).astype(np.uint8)
imgy = (img[:, :5].mean((1, 2)) > img[:, 5:].mean((1, 2))).astype(np.int64)
with h5py.File("d.h5", "w") as f:
    f["train/x"], f["train/y"], f["img/x"], f["img/y"] = x, y, img, imgy

def three_steps(model, xs, ys, lr, out):
    torch.save(model.state_dict(), out + ".pt")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for s in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs[16 * s:16 * s + 16]), ys[16 * s:16 * s + 16]).backward()
        opt.step()
    np.savez(out + "3.npz", **{k: v.numpy() for k, v in model.state_dict().items()})

scale = lambda a: torch.from_numpy(a.astype(np.float32) * np.float32(1 / 255) + np.float32(-0.5))
torch.manual_seed(3)
# A user's own nn.Sequential, plain indices: token i is module i (shardfit
# flattens the images for a dense layer itself, so no Flatten here).
mlp = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))
three_steps(mlp, scale(x).flatten(1), torch.from_numpy(y), 0.1, "mlp")
cnn = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
                    nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(400, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
three_steps(cnn, scale(img).unsqueeze(1), torch.from_numpy(imgy), 0.05, "cnn")

# The mapping alone: a module through params (as a checkpoint holds them)
# and an init file, rebuilt by shardfit_torch, computes the same.
def mapping():
    layers = "conv:4:3:1:1 batchnorm relu maxpool:2 conv:6:3 avgpool:2 flatten dense:5 batchnorm dense:3"
    user = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
                         nn.BatchNorm1d(5), nn.Linear(5, 3))
    user(torch.randn(8, 1, 12, 12))                # running statistics that are not the defaults
    user.eval()
    st.write_init("map.h5", layers, st.params_from_state_dict(layers, user.state_dict()))
    with h5py.File("map.h5") as f:
        assert f.attrs["format"] == "shardfit-checkpoint" and f.attrs["version"] == 1
        assert f["params/00_conv/weight"].shape == (4, 1, 3, 3)
        assert f["params/01_batchnorm/num_batches_tracked"].dtype == np.int64
        back = {g: {p: f["params"][g][p][()] for p in f["params"][g]} for g in f["params"]}
    again = st.build(layers, back)
    again.load_state_dict(st.state_dict(back))
    again.eval()
    probe = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(user(probe), again(probe))
    print("mapping ok")

try:
    mapping()
except Exception as e:
    print("mapping failed:", repr(e))
PY
grep -q "mapping ok" out && ok "conv, pooling and batchnorm map to nn.Sequential and back (in PyTorch)" ||
    bad "conv, pooling and batchnorm map to nn.Sequential and back"

cat > c.ini <<INI
[data]
path = $tmp/d.h5
features = /train/x
labels = /train/y
scale = 0.00392156862745098
offset = -0.5
[model]
layers = flatten dense:16 relu dropout:0.3 dense:8 sigmoid dense:3
[train]
epochs = 2
batch_size = 16
[optimizer]
lr = 0.1
momentum = 0.9
[log]
progress = none
INI
# run NAME NP ARGS...: trains c.ini into NAME/ on NP ranks.
run() {
    name=$1 np=$2; shift 2
    "$RUN" "$np" "$SF" train c.ini --set "checkpoint.dir=$name/ckpt" --set "log.dir=$name" "$@" >> log 2>&1
}
cnn_data="--set data.features=/img/x --set data.labels=/img/y --set optimizer.lr=0.05"
cnn=yes
if ! run cnn_out 1 $cnn_data --set "model.layers=conv:16:3:1:1 batchnorm relu maxpool:2 conv:16:3:1:1 relu maxpool:2 flatten dense:8 batchnorm relu dropout:0.2 dense:2"; then
    cp log out; grep -q "'conv:16:3:1:1': unknown layer" log || bad "the CNN trains"
    cnn=
fi

# Out: train, predict, export; then (below) compare in PyTorch.
run mlp_out 1 &&
"$SF" predict --checkpoint mlp_out/ckpt/epoch-0002.h5 --data d.h5 --features /train/x --out mlp_p.h5 >> log 2>&1 &&
"$S/torch-export" mlp_out/ckpt/epoch-0002.h5 -o mlp_model.pt > mlp_code.py 2>> log ||
    bad "MLP: train, predict, torch-export"
if [ -n "$cnn" ]; then
    "$SF" predict --checkpoint cnn_out/ckpt/epoch-0002.h5 --data d.h5 --features /img/x --out cnn_p.h5 >> log 2>&1 &&
    "$S/torch-export" cnn_out/ckpt/epoch-0002.h5 -o cnn_model.pt > cnn_code.py 2>> log ||
        bad "CNN: predict, torch-export"
fi

# In: import, train 3 steps.
"$S/torch-import" mlp.pt --layers "$MLP_IN" -o mlp_init.h5 >> log 2>&1 &&
run mlp_in 2 --set "model.layers=$MLP_IN" --set model.init_checkpoint=mlp_init.h5 \
    --set train.shuffle=false --set train.max_steps=3 || bad "MLP: torch-import, train 3 steps"
if [ -n "$cnn" ]; then
    "$S/torch-import" cnn.pt --layers "$CNN_IN" -o cnn_init.h5 >> log 2>&1 &&
    run cnn_in 1 $cnn_data --set "model.layers=$CNN_IN" --set model.init_checkpoint=cnn_init.h5 \
        --set train.shuffle=false --set train.max_steps=3 || bad "CNN: torch-import, train 3 steps"
fi

# Every comparison in one Python start: a line "NAME DIFF" each.
MLP_IN="$MLP_IN" CNN_IN="$CNN_IN" CNN=$cnn "$PY" - > cmp 2>&1 <<'PY'
import os
import h5py, numpy as np, torch

def export_diff(kind, group):
    env = {}
    exec(open(f"{kind}_code.py").read(), env)      # the module torch-export printed
    with h5py.File("d.h5") as d, h5py.File(f"{kind}_p.h5") as p:
        x = d[group][()].astype(np.float32) * np.float32(0.00392156862745098) + np.float32(-0.5)
        want = p["probabilities"][()]
    x = torch.from_numpy(x)
    with torch.no_grad():
        got = torch.softmax(env["model"](x.unsqueeze(1) if kind == "cnn" else x), 1).numpy()
    assert got.shape == want.shape
    return np.abs(got - want).max()

def import_diff(kind, layers):
    want = np.load(f"{kind}3.npz")
    groups = {str(i): f"{i:02d}_{t.split(':')[0]}" for i, t in enumerate(layers.split())}
    diff, n = 0.0, 0
    with h5py.File(f"{kind}_in/ckpt/step-00000003.h5") as f:
        for key in want.files:
            i, part = key.split(".", 1)
            diff = max(diff, float(np.abs(f["params"][groups[i]][part][()] - want[key]).max()))
            n += 1
    assert n == len(want.files)
    return diff

for name, fn in [("export-mlp", lambda: export_diff("mlp", "train/x")),
                 ("import-mlp", lambda: import_diff("mlp", os.environ["MLP_IN"])),
                 ("export-cnn", lambda: export_diff("cnn", "img/x")),
                 ("import-cnn", lambda: import_diff("cnn", os.environ["CNN_IN"]))]:
    if name.endswith("cnn") and not os.environ["CNN"]:
        continue
    try:
        print(name, fn())
    except Exception as e:
        print(name, "failed:", repr(e))
PY
# check NAME WHAT: the comparison NAME came out within 1e-5.
check() {
    d=$(sed -n "s/^$1 //p" cmp)
    if [ -n "$d" ] && awk -v d="$d" 'BEGIN { exit !(d + 0 == d && d <= 1e-5) }'
    then ok "$2 (max difference $d)"; else cp cmp out; bad "$2: ${d:-no result}"; fi
}
check export-mlp "MLP exported: its outputs equal shardfit predict to 1e-5"
check import-mlp "MLP initialised in PyTorch, imported, trained 3 steps on 2 ranks, equals PyTorch's 3 steps"
if [ -n "$cnn" ]; then
    check export-cnn "CNN exported: its outputs equal shardfit predict to 1e-5"
    check import-cnn "CNN initialised in PyTorch, imported, trained 3 steps, equals PyTorch's 3 steps (batchnorm statistics too)"
else
    ok "CNN export and import # skip: this shardfit has no conv layers"
fi

# Weights that do not fit the layers string.
"$S/torch-import" mlp.pt --layers "dense:32 tanh dense:3" -o bad.h5 > out 2>&1; st=$?
if [ "$st" -eq 2 ] && grep -q "error: 'mlp.pt': layer 00_dense: weight (16, 12) does not fit dense:32" out && [ ! -f bad.h5 ]
then ok "weights that do not fit the layers: exit 2 naming the layer"; else bad "weights that do not fit the layers (status $st)"; fi

summary
