"""RLPixTuner's stylization reward (eqs. 3-4), with a small network in place of VGG-19."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ispbench.tasks import style_reward as S


class TinyFeatures(nn.Module):
    """Two conv layers standing in for VGG-19's relu_x_1 taps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        fa = self.a(x)
        return [fa, self.b(fa)]


def test_gram_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(S.gram(f), expected)


def test_histograms_are_normalised_and_grey_has_neutral_chroma():
    grey = torch.full((2, 3, 8, 8), 0.5)
    y, uv = S.yuv_histograms(grey, bins=16)
    assert torch.allclose(y.sum(1), torch.ones(2)) and torch.allclose(uv.sum(1), 2 * torch.ones(2))
    centre = round(0.5 * 15)
    assert uv[0, centre] == 1 and uv[0, 16 + centre] == 1


def test_style_score_is_zero_for_the_goal_and_positive_otherwise():
    net = TinyFeatures()
    g = torch.Generator().manual_seed(1)
    goal, other = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g) * 0.3
    assert torch.allclose(S.style_score(goal, goal, net), torch.zeros(2), atol=1e-6)
    assert (S.style_score(other, goal, net) > 0).all()


def test_reward_is_positive_when_a_step_moves_towards_the_goal_style():
    net = TinyFeatures()
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 16, 16, generator=g) * 0.2
    goal = torch.rand(1, 3, 16, 16, generator=g)
    towards = 0.5 * image + 0.5 * goal
    reward = S.stylization_reward(image, towards, goal, net, content_reference=image, lambda_content=0.0)
    assert reward.item() > 0
    penalised = S.stylization_reward(image, towards, goal, net, content_reference=image)
    assert penalised.item() < reward.item()  # the content term only ever subtracts
    literal = S.stylization_reward(image, towards, goal, net, content_target="goal")
    assert torch.isfinite(literal).all()


def test_bad_arguments_are_refused():
    net = TinyFeatures()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="content_reference"):
        S.stylization_reward(x, x, x, net)
    with pytest.raises(ValueError, match="same shape"):
        S.style_score(x, torch.rand(1, 3, 4, 4), net)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        S.yuv_histograms(torch.rand(3, 8, 8))


def test_missing_vgg_weights_stop_with_the_file_to_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(S.VGGWeightsUnavailable) as info:
        S.vgg19_features()
    message = str(info.value)
    assert S.VGG19_FILE in message and str(tmp_path / "hub" / "checkpoints") in message


def test_vgg_weights_file_is_loaded_when_present(tmp_path):
    import torchvision

    model = torchvision.models.vgg19(weights=None)
    path = tmp_path / S.VGG19_FILE
    torch.save(model.state_dict(), path)
    features = S.vgg19_features(path)(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in features] == [64, 128, 256, 512]
