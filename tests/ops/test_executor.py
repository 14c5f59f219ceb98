"""Tests of the stage executor: per-sample equivalence, skip/STOP, gradients, and that the
work done grows with the modules chosen, not with the size of the pool."""

from __future__ import annotations

import pytest
import torch

from ispbench.ops import MAX_PARAMS, MODULE_NAMES, STOP, apply, apply_pipeline, apply_stage, n_params, squash
from ispbench.ops import modules as M

F64 = torch.float64


def _img(b=6, h=6, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(b, 3, h, w, generator=g, dtype=F64)


def _padded(b, seed=0, t=None):
    g = torch.Generator().manual_seed(seed)
    shape = (b, MAX_PARAMS) if t is None else (b, t, MAX_PARAMS)
    return 0.5 * torch.randn(*shape, generator=g, dtype=F64)


def _squashed(idx: int, raw: torch.Tensor) -> torch.Tensor:
    """Padded raw row -> the module's params in range (so the executor sees realistic values)."""
    name = MODULE_NAMES[idx]
    out = raw.clone()
    out[:, : n_params(name)] = squash(name, raw[:, : n_params(name)])
    return out


def test_stage_equals_per_sample_apply():
    x = _img(8)
    idx = torch.tensor([0, 2, 5, 6, 9, STOP, 2, 8])
    raw = _padded(8)
    params = torch.stack([_squashed(int(i) if i >= 0 else 0, raw[k : k + 1])[0] for k, i in enumerate(idx)])
    y = apply_stage(x, idx, params)
    for b in range(8):
        i = int(idx[b])
        if i == STOP:
            assert torch.equal(y[b], x[b])
        else:
            name = MODULE_NAMES[i]
            ref = apply(name, x[b : b + 1], params[b : b + 1, : n_params(name)])
            assert torch.allclose(y[b : b + 1], ref, atol=1e-12), name


def test_stage_accepts_dict_params_and_uniform_batch():
    x = _img(4)
    params = {"gamma": torch.tensor([[2.0], [0.5], [1.0], [3.0]], dtype=F64),
              "exposure": torch.tensor([[1.0], [0.0], [-1.0], [0.5]], dtype=F64)}
    idx = torch.tensor([3, 3, 0, 3])
    y = apply_stage(x, idx, params)
    assert torch.allclose(y[0], x[0] ** 2) and torch.allclose(y[2], x[2] / 2)
    y_all = apply_stage(x, torch.full((4,), 3), params)  # all the same module: direct path
    assert torch.allclose(y_all, apply("gamma", x, params["gamma"]))
    with pytest.raises(ValueError, match="no entry for chosen module 'ccm'"):
        apply_stage(x, torch.tensor([2, 3, 3, 3]), params)


def test_stage_refusals():
    x = _img(3)
    with pytest.raises(ValueError, match=r"values must be in \[-1, 9\]"):
        apply_stage(x, torch.tensor([0, 10, 1]), _padded(3))
    with pytest.raises(TypeError, match="integer tensor"):
        apply_stage(x, torch.tensor([0.0, 1.0, 1.0]), _padded(3))
    with pytest.raises(ValueError, match=r"padded params must have shape \(B, 9\)"):
        apply_stage(x, torch.tensor([0, 1, 2]), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"params must have shape \(B, T, 9\)"):
        apply_pipeline(x, torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 3, 9))


def test_all_skip_returns_copy():
    x = _img(2)
    y = apply_stage(x, torch.tensor([STOP, STOP]), _padded(2))
    assert torch.equal(x, y) and y is not x


def test_pipeline_variable_length_and_gradients():
    x = _img(3).requires_grad_(True)
    modules = torch.tensor([[0, 3, 9], [6, STOP, STOP], [STOP, STOP, STOP]])
    raw = _padded(3, seed=1, t=3)
    params = torch.stack([_squashed(0, raw[:, 0]), _squashed(6, raw[:, 1]), _squashed(9, raw[:, 2])], 1)
    params = params.detach().requires_grad_(True)
    y = apply_pipeline(x, modules, params)
    # sample 0: exposure -> gamma -> desaturation
    ref0 = apply("exposure", x[:1], params[:1, 0, :1])
    ref0 = apply("gamma", ref0, params[:1, 1, :1])
    ref0 = apply("desaturation", ref0, params[:1, 2, :1])
    assert torch.allclose(y[:1], ref0)
    assert torch.allclose(y[1:2], apply("tone", x[1:2], params[1:2, 0, :8]))
    assert torch.equal(y[2], x[2])  # stopped at once
    y.sum().backward()
    assert params.grad[0, 0, 0] != 0 and params.grad[0, 1, 0] != 0 and params.grad[0, 2, 0] != 0
    assert params.grad[1, 0, :8].abs().sum() > 0
    assert params.grad[1, 1:].abs().sum() == 0 and params.grad[2].abs().sum() == 0  # unused
    assert torch.allclose(x.grad[2], torch.ones_like(x.grad[2]))  # identity path


def test_stage_gradcheck():
    x = _img(3, 3, 3).requires_grad_(True)
    idx = torch.tensor([2, 8, 2])
    params = torch.stack([_squashed(2, _padded(1, 3))[0], _squashed(8, _padded(1, 4))[0], _squashed(2, _padded(1, 5))[0]])
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, p: apply_stage(a, idx, p), (x, params), eps=1e-6, atol=1e-5, fast_mode=True)


def test_work_grows_with_chosen_modules_not_pool(monkeypatch):
    calls: list[tuple[str, int]] = []
    real = {name: M.KERNELS[name] for name in MODULE_NAMES}

    def counting(name):
        def kernel(image, p, variant, clamp):
            calls.append((name, image.shape[0]))
            return real[name](image, p, variant, clamp)

        return kernel

    for name in MODULE_NAMES:
        monkeypatch.setitem(M.KERNELS, name, counting(name))
    x = _img(8, 5, 5)
    params = _padded(8).abs() + 0.5

    apply_stage(x, torch.tensor([0, 0, 0, 0, 0, 0, 0, 0]), params)
    assert calls == [("exposure", 8)]  # one module, one call, not ten

    calls.clear()
    apply_stage(x, torch.tensor([0, 3, 3, STOP, STOP, STOP, STOP, STOP]), params)
    assert sorted(calls) == [("exposure", 1), ("gamma", 2)]  # 3 samples processed, 5 skipped
    assert sum(n for _, n in calls) == 3

    calls.clear()
    apply_stage(x, torch.tensor([0, 1, 2, 3, 5, 6, 7, 8]), params)
    assert len(calls) == 8 and all(n == 1 for _, n in calls)  # 8 samples, 8 single-sample calls

    calls.clear()
    apply_pipeline(x, torch.full((8, 4), STOP), _padded(8, t=4))
    assert calls == []
