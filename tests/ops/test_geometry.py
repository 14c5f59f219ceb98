"""Letterbox geometry: canvas sizes, padding value, exact box round trips, both resamplers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ispbench.ops.geometry import (
    LetterboxLayout,
    boxes_from_letterbox,
    boxes_to_letterbox,
    fit_size,
    letterbox,
    rect_canvas,
    resize_image,
)


def test_rect_canvas_like_ultralytics_val():
    assert rect_canvas(160, 160, 160) == (192, 192)
    assert rect_canvas(341, 512, 512) == (384, 544)
    out, layout = letterbox(torch.rand(1, 3, 40, 80), 64, pad_value=0.5, rect=True)
    assert out.shape[-2:] == (64, 96) and layout.pad == (16, 16) and layout.canvas == (64, 96)


@pytest.mark.parametrize("pad_value", [0.0, 114.0 / 255.0, 0.75])
@pytest.mark.parametrize("method", ["bilinear", "area"])
@pytest.mark.parametrize("hw", [(48, 96), (96, 48), (30, 50)])
def test_letterbox_pads_with_the_given_value_and_keeps_the_image(pad_value, method, hw):
    img = torch.rand(2, 3, *hw)
    out, layout = letterbox(img, 64, pad_value=pad_value, method=method)
    (nh, nw), (top, left) = layout.resized, layout.pad
    assert out.shape == (2, 3, 64, 64) and layout.canvas == (64, 64) and max(nh, nw) == 64
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[top : top + nh, left : left + nw] = True
    assert (~inside).any()
    assert torch.equal(out[..., ~inside], torch.full_like(out[..., ~inside], pad_value))
    assert torch.equal(out[..., top : top + nh, left : left + nw], resize_image(img, (nh, nw), method))


def test_letterbox_maps_boxes_in_and_out_exactly():
    # 48 x 96 -> 32 x 64 on a 64 x 64 canvas, 16 px bars: all scale factors are powers of two,
    # so the round trip is exact in float32.
    out, layout = letterbox(torch.rand(1, 3, 48, 96), 64, pad_value=0.0)
    assert layout == LetterboxLayout((48, 96), (32, 64), (16, 0), (64, 64))
    assert layout.scale == (32 / 48, 64 / 96)
    boxes = torch.tensor([[0.5, 0.5, 0.25, 0.5], [0.125, 0.75, 0.125, 0.25]])
    on_canvas = boxes_to_letterbox(boxes, layout)
    # by hand: cx = (0.5 * 64 + 0) / 64, cy = (0.5 * 32 + 16) / 64, w = 0.25 * 64 / 64, h = 0.5 * 32 / 64
    torch.testing.assert_close(on_canvas[0], torch.tensor([0.5, 0.5, 0.25, 0.25]), rtol=0, atol=0)
    px = torch.cat([(on_canvas[:, :2] - on_canvas[:, 2:] / 2) * 64, (on_canvas[:, :2] + on_canvas[:, 2:] / 2) * 64], 1)
    det = torch.cat([px, torch.ones(2, 1), torch.zeros(2, 1)], 1)
    back = boxes_from_letterbox(det, layout)
    ref = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1) * torch.tensor([96, 48, 96, 48])
    assert torch.equal(back[:, :4], ref)
    assert torch.equal(back[:, 4:], det[:, 4:])


def test_letterbox_round_trip_on_a_non_square_box():
    _, layout = letterbox(torch.rand(1, 3, 37, 53), (40, 80), pad_value=0.0, method="area")
    assert layout.resized == fit_size(37, 53, (40, 80)) == (40, 57)
    boxes = torch.rand(5, 4, dtype=torch.float64) * 0.5 + 0.25
    on_canvas = boxes_to_letterbox(boxes, layout)
    (nh, nw), (top, left), (ch, cw) = layout.resized, layout.pad, layout.canvas
    back = torch.stack([(on_canvas[:, 0] * cw - left) / nw, (on_canvas[:, 1] * ch - top) / nh,
                        on_canvas[:, 2] * cw / nw, on_canvas[:, 3] * ch / nh], 1)
    torch.testing.assert_close(back, boxes, rtol=0, atol=1e-15)


def test_resamplers():
    img = torch.rand(1, 3, 40, 60)
    assert resize_image(img, (40, 60), "area") is img
    assert torch.equal(resize_image(img, (20, 30), "area"), F.interpolate(img, size=(20, 30), mode="area"))
    assert torch.equal(resize_image(img, (20, 30), "bilinear"),
                       F.interpolate(img, size=(20, 30), mode="bilinear", align_corners=False, antialias=True))
    assert torch.equal(resize_image(img, (80, 120), "area"),
                       F.interpolate(img, size=(80, 120), mode="bilinear", align_corners=False))
    with pytest.raises(ValueError, match="method"):
        resize_image(img, (20, 30), "nearest")
    with pytest.raises(ValueError, match="rect"):
        letterbox(img, (64, 64), pad_value=0.0, rect=True)
