"""Exports of AdaIR: full and as a difference from a base export."""

import pytest
import torch

from ispbench.methods.irpo.inference import export_model, load_model
from ispbench.methods.irpo.network import AdaIR, AdaIRConfig

CONFIG = AdaIRConfig(dim=8)


def _changed_copy(model: AdaIR) -> AdaIR:
    other = AdaIR(CONFIG)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.output.weight.add_(0.01)  # a post-training that moved one tensor
    return other


def test_difference_export_round_trips_and_is_small(tmp_path):
    torch.manual_seed(0)
    base = AdaIR(CONFIG)
    export_model(base, tmp_path / "base.pt")
    tuned = _changed_copy(base)
    export_model(tuned, tmp_path / "tuned.pt", base=tmp_path / "base.pt", metadata={"iterations": 3})
    full = export_model(tuned, tmp_path / "full.pt")
    assert (tmp_path / "tuned.pt").stat().st_size < full.stat().st_size / 4
    loaded = load_model(tmp_path / "tuned.pt")
    assert loaded.metadata == {"iterations": 3}
    for key, value in tuned.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 3, 16, 16)
    assert not torch.equal(loaded(x), load_model(tmp_path / "base.pt")(x))  # the difference was applied


def test_difference_export_refuses_a_missing_or_changed_base(tmp_path):
    torch.manual_seed(0)
    base = AdaIR(CONFIG)
    export_model(base, tmp_path / "base.pt")
    export_model(_changed_copy(base), tmp_path / "tuned.pt", base=tmp_path / "base.pt")
    export_model(_changed_copy(base), tmp_path / "base.pt")  # the base is overwritten
    with pytest.raises(ValueError, match="base.pt.*changed since"):
        load_model(tmp_path / "tuned.pt")
    (tmp_path / "base.pt").unlink()
    with pytest.raises(FileNotFoundError, match="difference from base.pt"):
        load_model(tmp_path / "tuned.pt")


def test_difference_export_needs_the_base_beside_it(tmp_path):
    (tmp_path / "a").mkdir()
    base = AdaIR(CONFIG)
    export_model(base, tmp_path / "base.pt")
    with pytest.raises(ValueError, match="same folder"):
        export_model(base, tmp_path / "a" / "tuned.pt", base=tmp_path / "base.pt")
