"""The small AdaIR: shapes, the Beta heads, the authors' inert mask and our fix, export and load."""

from __future__ import annotations

import pytest
import torch

from ispbench.methods.irpo.inference import export_model, load_model, make_restore_fn
from ispbench.methods.irpo.network import (
    EMBEDDED_CONFIG,
    PAPER_CONFIG,
    AdaIR,
    AdaIRConfig,
    centred_box_mask,
    count_parameters,
)

TINY = AdaIRConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


def test_sizes_match_the_reference():
    # the reference: dim 16 / one block per level ~1.1 M; the authors' default ~28.8 M
    assert 1.0e6 < count_parameters(AdaIR(EMBEDDED_CONFIG)) < 1.2e6
    assert 28.5e6 < count_parameters(AdaIR(PAPER_CONFIG)) < 29.1e6


def test_forward_paths_and_log_prob():
    torch.manual_seed(0)
    net = AdaIR(TINY)
    x = torch.rand(3, 3, 32, 40)
    det = net(x)
    assert det.shape == x.shape
    assert torch.equal(det, net(x))  # the deterministic path draws nothing
    out, lp = net(x, stochastic=True)
    assert out.shape == x.shape and lp.shape == (3,) and torch.isfinite(lp).all()
    lp.sum().backward()
    assert all(p.grad is not None for p in net.policy_parameters())
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, 30, 32))


def test_gains_only_matter_once_the_frequency_gain_is_nonzero():
    # gain_frequency starts at 0 (the block adds nothing); the skip gain g2 scales the features, so a
    # stochastic sample differs from the deterministic output (where the authors use g = 1)
    torch.manual_seed(0)
    net = AdaIR(TINY)
    x = torch.rand(2, 3, 32, 32)
    out, _ = net(x, stochastic=True)
    assert not torch.allclose(out, net(x))


def test_authors_mask_is_empty_below_256px_and_the_fraction_rule_is_not():
    authors = AdaIR(TINY).frequency3
    fraction = AdaIR(AdaIRConfig(dim=8, mask_rule="fraction")).frequency3
    ratio = torch.tensor([[0.9, 0.9]])
    for h in (16, 64, 128, 255):
        hh, hw = authors.half_sizes(ratio, h, h)
        assert int(hh) == 0 and int(hw) == 0
    hh, _ = authors.half_sizes(ratio, 256, 256)
    assert int(hh) == 1
    hh, hw = fraction.half_sizes(ratio, 64, 64)
    assert int(hh) == 28 and int(hw) == 28
    x = torch.randn(1, 8, 16, 16)
    high, low = authors.split_frequencies(x, ratio)
    assert torch.equal(low, torch.zeros_like(x)) and torch.allclose(high, x.abs())
    high, low = fraction.split_frequencies(x, ratio)
    assert low.abs().sum() > 0 and not torch.allclose(high, x.abs())


def test_centred_box_mask():
    m = centred_box_mask((2, 1, 8, 8), torch.tensor([1, 0]), torch.tensor([2, 3]))
    assert m.shape == (2, 1, 8, 8)
    assert int(m[0].sum()) == 2 * 4 and int(m[1].sum()) == 0
    assert m[0, 0, 3:5, 2:6].eq(1).all()


def test_authors_trainable_set():
    net = AdaIR(TINY)
    trainable = {id(p) for p in net.authors_trainable_parameters()}
    names = {n for n, p in net.named_parameters() if id(p) in trainable}
    assert any(n.startswith("refinement.") for n in names) and "output.weight" in names
    assert any(n.startswith("decoder_level1.") and "norm" in n for n in names)
    assert not any(n.startswith("decoder_level1.") and "attn" in n for n in names)
    assert not any(n.startswith("encoder_level1.") for n in names)
    assert sum(n.startswith("frequency") for n in names) == 3 * 2 * 3  # 3 modules x 2 heads x (2 convs + 1 bias)


def test_export_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    net = AdaIR(TINY)
    path = export_model(net, tmp_path / "m.pt", metadata={"iterations": 3})
    loaded = load_model(path)
    assert loaded.config == TINY and loaded.metadata["iterations"] == 3
    x = torch.rand(1, 3, 21, 19)  # not a multiple of 8: padded and cropped back
    assert torch.allclose(make_restore_fn(net)(x), make_restore_fn(loaded)(x))
    assert make_restore_fn(loaded)(x).shape == x.shape
    with pytest.raises(FileNotFoundError, match="irpo-pretrain"):
        load_model(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an AdaIR export"):
        load_model(tmp_path / "bad.pt")


def test_config_validation():
    with pytest.raises(ValueError, match="mask_rule"):
        AdaIRConfig(mask_rule="wide")
    with pytest.raises(ValueError, match="unknown AdaIR config fields"):
        AdaIRConfig.from_dict({"dim": 16, "depth": 3})


def test_replayed_actions_give_the_same_output_and_log_prob():
    torch.manual_seed(0)
    net = AdaIR(TINY)
    with torch.no_grad():
        for m in net.frequency_modules():
            m.gain_frequency.fill_(0.5)  # so that the gains g1 matter too
    x = torch.rand(2, 3, 32, 32)
    out, lp = net(x, stochastic=True)
    actions = net.last_actions
    assert actions.shape == (2, 3, 4) and ((actions > 0) & (actions < 1)).all()
    out2, lp2 = net(x, stochastic=True, actions=actions)
    assert torch.allclose(out, out2, atol=1e-5) and torch.allclose(lp, lp2, atol=1e-4)
    with pytest.raises(ValueError, match="actions"):
        net(x, actions=actions)
