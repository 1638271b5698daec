"""An independent, functional re-statement of the official IFAN forward, read straight from an
official-layout state dict (keys ``Network.*`` / ``reblurNet.*``, no ``module.``).

It shares no code with ``ifan`` but the layout of the IAC filter tensor, which it takes from its
owner (``ifan.ops.iac.split_filters``; its IAC unfolds the input as the official code does), so
agreement between the two checks our module layout, key mapping and IAC. It is validated
against the official bundle in ``test_official.py`` (which checks that layout too) and then used
as the reference for configurations the bundle does not cover (the default config with other
random weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ifan.ops.iac import split_filters


def _lrelu(x):
    return F.leaky_relu(x, 0.1)


def _conv(sd, name, x, stride=1, act=True):
    w = sd[name + ".weight"]
    y = F.conv2d(x, w, sd[name + ".bias"], stride=stride, padding=(w.shape[-1] - 1) // 2)
    return _lrelu(y) if act else y


def _resblock(sd, name, x):
    units = len({k[len(name) + 6:].split(".")[0] for k in sd if k.startswith(name + ".stem.")})
    skip = x
    for i in range(units):
        x = _lrelu(x + _conv(sd, f"{name}.stem.{i}.2", _conv(sd, f"{name}.stem.{i}.0", x), act=False))
    return x + skip if units > 1 else x


def _stack(sd, name, x, last_act):
    """conv, resblocks..., last conv (named ``name.{last}`` or ``name.{last}.0``)."""
    x = _conv(sd, f"{name}.0.0", x)
    idx = 1
    while f"{name}.{idx}.stem.0.0.weight" in sd:
        x = _resblock(sd, f"{name}.{idx}", x)
        idx += 1
    last = f"{name}.{idx}.0" if f"{name}.{idx}.0.weight" in sd else f"{name}.{idx}"
    return _conv(sd, last, x, act=last_act)


def _encoder(sd, prefix, x):
    feats = []
    for lv in range(1, 5):
        for j in range(1, 4):
            x = _conv(sd, f"Network.{prefix}{lv}_{j}.0", x, stride=2 if (j == 1 and lv > 1) else 1)
        feats.append(x)
    return feats


def _sac_unfold(x, k1, k2, k, official):
    b, c, h, w = x.shape
    p = (k - 1) // 2
    y = F.pad(x, (0, 0, p, p), mode="replicate").unfold(2, k, 1).permute(0, 2, 3, 1, 4).reshape(b, h, w, c, k)
    y = (y * k1.permute(0, 2, 3, 1).reshape(b, h, w, c, k)).sum(-1).permute(0, 3, 1, 2)
    second = k1 if official else k2
    y = F.pad(y, (p, p, 0, 0), mode="replicate").unfold(3, k, 1).permute(0, 2, 3, 1, 4).reshape(b, h, w, c, k)
    return (y * second.permute(0, 2, 3, 1).reshape(b, h, w, c, k)).sum(-1).permute(0, 3, 1, 2)


def reference_iac(x, filters, n, c, k, act_last=True, official=True):
    kernels1, kernels2, biases = split_filters(filters, n, c, k)
    for i in range(n):
        x = _sac_unfold(x, kernels1[i], kernels2[i], k, official) + biases[i]
        if i < n - 1 or act_last:
            x = _lrelu(x)
    return x


def reference_forward(sd, C, R=None, L=None, GT=None, N=17, Fs=3, official=True, rbf_num=None):
    """The official ``DeblurNet`` forward. Returns a dict like the official ``outs``
    (``result`` unclipped; ``Filter``, ``DM``, ``DM_R``, ``f_R_w``, ``f_L``, ``SB`` when inputs allow)."""
    f1, f2, f3, f_c = _encoder(sd, "conv", C)
    c4 = f_c.shape[1]
    dual = sd["Network.kconv1_1.0.weight"].shape[1] == 6
    e = _encoder(sd, "kconv", torch.cat([R, L], 1) if dual else C)[-1]
    dm = _stack(sd, "Network.DME", e, last_act=False)
    f = _stack(sd, "Network.conv4_4", torch.cat([e, _conv(sd, "Network.conv_DME.0", dm)], 1), last_act=True)
    filters = _stack(sd, "Network.F", f, last_act=False)
    x = reference_iac(f_c, filters, N, c4, Fs, True, official)
    x = _stack(sd, "Network.conv_res", x, last_act=True)
    for lv, skip in ((3, f3), (2, f2), (1, f1)):
        x = F.conv_transpose2d(x, sd[f"Network.upconv{lv}_u.0.weight"], sd[f"Network.upconv{lv}_u.0.bias"],
                               stride=2, padding=1)
        x = _lrelu(x) + skip
        x = _resblock(sd, f"Network.upconv{lv}_2", _resblock(sd, f"Network.upconv{lv}_1", x))
    out = {"result": _conv(sd, "Network.out_res.0", x) + C, "Filter": filters, "DM": dm}
    if R is not None and L is not None:
        dm_r = dm if dual else _stack(sd, "Network.DME", _encoder(sd, "kconv", R)[-1], last_act=False)
        r_small = F.interpolate(R, scale_factor=1 / 8, mode="area")
        b, _, h, w = r_small.shape
        xs = torch.linspace(-1, 1, w, dtype=C.dtype).view(1, 1, w).expand(b, h, w) + dm_r[:, 0] / ((w - 1) / 2)
        ys = torch.linspace(-1, 1, h, dtype=C.dtype).view(1, h, 1).expand(b, h, w)
        out["DM_R"] = dm_r
        out["f_R_w"] = F.grid_sample(r_small, torch.stack([xs, ys], -1), align_corners=True)
        out["f_L"] = F.interpolate(L, scale_factor=1 / 8, mode="area")
    if GT is not None and "reblurNet.RBF.0.0.weight" in sd:
        s = F.interpolate(GT, scale_factor=1 / 8)
        rbf = _stack(sd, "reblurNet.RBF", filters, last_act=False)
        n_rb = rbf_num or N
        out["SB"] = reference_iac(s, rbf, n_rb, 3, 3, act_last=False, official=official) + s
    return out
