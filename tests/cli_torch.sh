#!/bin/sh
# cli_torch.sh: weights in and out of PyTorch (scripts/torch-export,
# scripts/torch-import, Debian's python3-torch and python3-h5py):
#  - out: a model trained by shardfit on (N, 3, 4) images (flatten, dense,
#    relu, dropout, sigmoid), exported; the module torch-export prints, with
#    its weights, gives the probabilities `shardfit predict` wrote, to 1e-5;
#  - in: an nn.Sequential initialised in PyTorch (dense-first on images:
#    the implicit flatten, dense, tanh), imported, trained 3 steps by shardfit
#    on 2 ranks (SGD with momentum, shuffle = false) equals PyTorch's own 3
#    steps to 1e-5;
#  - weights that do not fit the layers: exit 2 naming the layer.
# Conv, pooling and batchnorm: the mapping is checked in PyTorch alone (a
# module through an init file and back computes the same), not yet against
# shardfit, which does not have those layers yet. Ends "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
PY=/usr/bin/python3
S="$(pwd)/scripts"
cd "$tmp" || exit 1

# One Python start for the data, the PyTorch model and PyTorch's 3 steps.
SCRIPTS="$S" "$PY" - > "$tmp/out" 2>&1 <<'PY' || { bad "PyTorch side (data, model, 3 steps)"; summary; exit 1; }
import h5py, numpy as np, torch
from torch import nn
rng = np.random.default_rng(5)
x = rng.integers(0, 256, size=(200, 3, 4)).astype(np.uint8)
y = (x.reshape(200, -1)[:, :6].sum(1) > x.reshape(200, -1)[:, 6:].sum(1)).astype(np.int64)
y[x[:, 0, 0] > 200] = 2
with h5py.File("d.h5", "w") as f:
    f["train/x"], f["train/y"] = x, y
torch.manual_seed(3)
# A user's own nn.Sequential: plain indices, token i = module i (shardfit
# flattens the images for the dense layer itself).
model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))
sd = model.state_dict()
torch.save(sd, "init.pt")
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
xs = torch.from_numpy(x.astype(np.float32) * np.float32(1 / 255) + np.float32(-0.5))
for s in range(3):
    opt.zero_grad()
    nn.functional.cross_entropy(model(xs[16 * s:16 * s + 16].flatten(1)),
                                torch.from_numpy(y[16 * s:16 * s + 16])).backward()
    opt.step()
np.savez("torch3.npz", **{k: v.numpy() for k, v in model.state_dict().items()})

# The conv, pooling and batchnorm mapping, in PyTorch alone: a user's
# module, through params (as a checkpoint holds them) and an init file,
# rebuilt by shardfit_torch, computes the same.
import os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
import shardfit_torch as st
layers = "conv:4:3:1:1 batchnorm relu maxpool:2 conv:6:3 avgpool:2 flatten dense:5 batchnorm dense:3"
user = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                     nn.Conv2d(4, 6, 3), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
                     nn.BatchNorm1d(5), nn.Linear(5, 3))
user.train()
user(torch.randn(8, 1, 12, 12))                # running statistics that are not the defaults
user.eval()
params = st.params_from_state_dict(layers, user.state_dict())
st.write_init("cnn.h5", layers, params)
with h5py.File("cnn.h5") as f:
    assert f.attrs["format"] == "shardfit-checkpoint" and f.attrs["version"] == 1
    assert f["params/00_conv/weight"].shape == (4, 1, 3, 3)
    assert f["params/01_batchnorm/num_batches_tracked"].dtype == np.int64
    back = {g: {p: f["params"][g][p][()] for p in f["params"][g]} for g in f["params"]}
again = st.build(layers, back)
again.load_state_dict(st.state_dict(back))
again.eval()
x = torch.randn(2, 1, 12, 12)
with torch.no_grad():
    assert torch.equal(user(x), again(x)), "conv mapping"
print("cnn mapping ok")
PY
grep -q "cnn mapping ok" "$tmp/out" && ok "conv, pooling and batchnorm map to nn.Sequential and back (PyTorch only)" ||
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
[checkpoint]
dir = $tmp/run/ckpt
[log]
dir = $tmp/run
progress = none
INI

# Out: train, predict, export, and compare in PyTorch.
"$SF" train c.ini > out 2>&1 &&
"$SF" predict --checkpoint run/ckpt/epoch-0002.h5 --data d.h5 --features /train/x --out p.h5 > out 2>&1 &&
"$S/torch-export" run/ckpt/epoch-0002.h5 -o model.pt > code.py 2> out
if grep -q "stored features \* 0.00392156862745098 + -0.5" code.py &&
   "$PY" - > out 2>&1 <<'PY'
import h5py, numpy as np, torch
env = {}
exec(open("code.py").read(), env)              # the module torch-export printed
model = env["model"]
with h5py.File("d.h5") as d, h5py.File("p.h5") as p:
    x = d["train/x"][()].astype(np.float32) * np.float32(0.00392156862745098) + np.float32(-0.5)
    want = p["probabilities"][()]
with torch.no_grad():
    got = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
diff = np.abs(got - want).max()
print("max |torch - shardfit predict| =", diff)
assert got.shape == want.shape == (200, 3) and diff <= 1e-5
PY
then ok "exported model's outputs equal shardfit predict to 1e-5 ($(tail -n 1 out))"
else bad "exported model's outputs equal shardfit predict"; cat code.py; fi

# In: import, train 3 steps on 2 ranks, compare with PyTorch's 3 steps.
"$S/torch-import" init.pt --layers "dense:16 tanh dense:3" -o init.h5 > out 2>&1 &&
"$RUN" 2 "$SF" train c.ini --set "model.layers=dense:16 tanh dense:3" \
    --set model.init_checkpoint=init.h5 --set train.shuffle=false \
    --set train.max_steps=3 --set checkpoint.dir=in/ckpt --set log.dir=in > out 2>&1
if [ -f in/ckpt/step-00000003.h5 ] && "$PY" - > out 2>&1 <<'PY'
import h5py, numpy as np
want = np.load("torch3.npz")
diff = 0.0
with h5py.File("in/ckpt/step-00000003.h5") as f:
    for key, group in (("0", "00_dense"), ("2", "02_dense")):
        for part in ("weight", "bias"):
            diff = max(diff, np.abs(f["params"][group][part][()] - want[f"{key}.{part}"]).max())
print("max |shardfit - torch| after 3 steps =", diff)
assert diff <= 1e-5
PY
then ok "PyTorch-initialised model, imported and trained 3 steps, equals PyTorch's 3 steps ($(tail -n 1 out))"
else bad "imported model trained 3 steps equals PyTorch"; fi

# Weights that do not fit the layers string.
"$S/torch-import" init.pt --layers "dense:32 tanh dense:3" -o bad.h5 > out 2>&1; st=$?
if [ "$st" -eq 2 ] && grep -q "error: 'init.pt': layer 00_dense: weight (16, 12) does not fit dense:32" out && [ ! -f bad.h5 ]
then ok "weights that do not fit the layers: exit 2 naming the layer"; else bad "weights that do not fit the layers (status $st)"; fi

summary
