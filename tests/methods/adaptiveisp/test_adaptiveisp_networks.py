"""Shapes, ranges and initialisation of the AdaptiveISP networks (paper Appendix C.1)."""

from __future__ import annotations

import pytest
import torch

from ispbench import ops
from ispbench.methods.adaptiveisp.networks import FeatureExtractor, PolicyNet, ValueNet
from ispbench.ops import identity_raw


def test_feature_extractor_shape_and_refusal():
    fe = FeatureExtractor(14)
    assert fe(torch.rand(2, 14, 64, 64)).shape == (2, 4096)
    with pytest.raises(ValueError, match="expected x of shape"):
        fe(torch.rand(2, 14, 32, 32))


@pytest.mark.parametrize("heads", ["per_module", "shared"])
@pytest.mark.parametrize("use_stop", [False, True])
def test_policy_shapes_and_ranges(heads, use_stop):
    torch.manual_seed(0)
    policy = PolicyNet(use_stop=use_stop, param_heads=heads).eval()
    assert policy.in_channels == 3 + 10 + 1
    logits, raw = policy(torch.rand(3, policy.in_channels, 64, 64))
    assert logits.shape == (3, 10 + int(use_stop))
    params = policy.module_params({k: v * 1000 for k, v in raw.items()})  # extreme outputs stay in range
    for name in ops.MODULE_NAMES:
        assert params[name].shape == (3, ops.n_params(name))
        lo = torch.tensor([r[0] for r in ops.param_ranges(name)])
        hi = torch.tensor([r[1] for r in ops.param_ranges(name)])
        assert bool((params[name] >= lo - 1e-5).all() and (params[name] <= hi + 1e-5).all())


def test_untrained_heads_start_near_identity():
    policy = PolicyNet(param_heads="shared").eval()
    _, raw = policy(torch.rand(2, policy.in_channels, 64, 64))
    params = policy.module_params(raw)
    x = torch.rand(2, 3, 16, 16)
    for name in ops.MODULE_NAMES:
        y = ops.apply(name, x, params[name])
        assert (y - x).abs().max() < 0.05, name
    assert torch.allclose(identity_raw("gamma", 1), torch.zeros(1))


def test_shared_heads_are_smaller_and_value_net_shape():
    n_shared = sum(p.numel() for p in PolicyNet(param_heads="shared").parameters())
    n_full = sum(p.numel() for p in PolicyNet(param_heads="per_module").parameters())
    assert n_shared * 2 < n_full
    assert n_shared * 2 < 10 * 2**20  # float16 export < 10 MB
    value = ValueNet()
    assert value.in_channels == 3 + 10 + 1 + 3
    assert value(torch.rand(4, value.in_channels, 64, 64)).shape == (4,)


def test_disabled_modules_get_no_probability():
    policy = PolicyNet(disabled_modules=["denoise"]).eval()
    logits, _ = policy(torch.rand(2, policy.in_channels, 64, 64))
    probs = logits.softmax(-1)
    assert probs[:, ops.MODULE_NAMES.index("denoise")].max() == 0
    assert policy.config()["disabled_modules"] == ["denoise"]
    with pytest.raises(ValueError, match="not in the pool"):
        PolicyNet(disabled_modules=["nope"])


def test_init_head_biases_sets_the_squashed_parameters():
    from ispbench import ops

    torch.manual_seed(0)
    policy = PolicyNet(param_heads="shared", disabled_modules=["denoise"], mask_reuse=True).eval()
    assert policy.config()["mask_reuse"] is True
    done = policy.init_head_biases({"gamma": torch.tensor([0.5]), "not_a_module": torch.zeros(1)})
    assert done == ["gamma"]
    _, raw = policy(torch.rand(2, policy.in_channels, 64, 64))
    gamma = policy.module_params(raw)["gamma"]
    assert torch.allclose(gamma, ops.squash("gamma", torch.full((2, 1), 0.5)), atol=1e-2)
    with pytest.raises(ValueError, match="gamma needs 1"):
        policy.init_head_biases({"gamma": torch.zeros(3)})
