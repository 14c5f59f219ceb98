"""POS-ISP networks: the authors' sizes, uniform first choices, masking, EOS, the linear parameter mapping."""

from __future__ import annotations

import math

import pytest
import torch

from ispbench import ops
from ispbench.methods.posisp.inference import export_model, load_model
from ispbench.methods.posisp.networks import (
    MAX_LENGTH,
    STOP,
    ParameterNet,
    PosISP,
    SequenceDecoder,
    n_parameters,
    render,
)


def test_parameter_counts_match_the_authors_networks():
    assert n_parameters(ParameterNet()) == 527_067  # the paper's 0.53 M
    assert n_parameters(SequenceDecoder()) == 56_635


def test_first_choices_are_uniform_over_modules_and_eos():
    dec = SequenceDecoder()
    logits, _ = dec._step_logits(torch.tensor([dec.sos]), None, 0)
    assert torch.allclose(logits, torch.ones_like(logits))
    seq = dec.sample(2000, temperature=2.5, generator=torch.Generator().manual_seed(0))
    first = seq.modules[:, 0]
    eos_rate = float((first == STOP).float().mean())
    assert abs(eos_rate - 1 / 11) < 0.03
    counts = torch.bincount(first[first != STOP], minlength=10).float() / len(first)
    assert torch.all((counts - 1 / 11).abs() < 0.03)


def test_sampled_pipelines_never_repeat_a_module_and_log_prob_matches_the_lengths():
    dec = SequenceDecoder()
    seq = dec.sample(256, temperature=1.0, generator=torch.Generator().manual_seed(1))
    for row, length in zip(seq.modules, seq.lengths, strict=True):
        chosen = row[row != STOP]
        assert len(chosen) == int(length) and len(set(chosen.tolist())) == len(chosen)
        assert torch.all(row[int(length):] == STOP)  # nothing after EOS
    # uniform logits: the probability of a pipeline of length L is prod_{t<=L} 1 / (11 - t) (last factor: EOS)
    for row_logp, length in zip(seq.log_prob, seq.lengths, strict=True):
        L = int(length)
        expected = -sum(math.log(11 - t) for t in range(L + 1)) if L < MAX_LENGTH else -sum(math.log(11 - t) for t in range(L))
        assert float(row_logp.detach()) == pytest.approx(expected, abs=1e-4)


def test_greedy_decode_of_an_untrained_decoder_is_all_ten_modules():
    # ties resolve to the first index: the initial argmax never emits EOS (as the authors' checkpoints decode)
    assert SequenceDecoder().decode() == list(ops.MODULE_NAMES)


def test_parameters_map_linearly_into_the_posisp_ranges():
    net = ParameterNet()
    unit = torch.tensor([[0.0] * 27, [1.0] * 27, [0.5] * 27])
    p = net.module_params(unit)
    assert p["gamma"][:, 0].tolist() == pytest.approx([1 / 3, 3.0, (1 / 3 + 3) / 2])
    assert p["white_balance"][1].tolist() == pytest.approx([1.1] * 3)
    assert p["sharpen_blur"][1].item() == pytest.approx(10.0)
    assert p["exposure"][:, 0].tolist() == pytest.approx([-3.5, 3.5, 0.0])


def test_render_runs_each_images_own_pipeline():
    x = torch.rand(2, 3, 16, 16) * 0.5
    e, d = ops.MODULE_NAMES.index("exposure"), ops.MODULE_NAMES.index("desaturation")
    modules = torch.tensor([[e, STOP], [d, e]])
    params = ParameterNet().module_params(torch.full((2, 27), 0.75))
    y = render(x, modules, params)
    one = ops.apply("exposure", x[:1], params["exposure"][:1], variant="posisp").clamp(0, 1)
    two = ops.apply("exposure", ops.apply("desaturation", x[1:], params["desaturation"][1:], variant="posisp"),
                    params["exposure"][1:], variant="posisp").clamp(0, 1)
    assert torch.allclose(y[:1], one) and torch.allclose(y[1:], two)


def test_export_and_load_round_trip(tmp_path):
    model = PosISP().eval()
    with torch.no_grad():
        model.decoder.out.bias[ops.MODULE_NAMES.index("gamma")] += 1.0  # gamma first, then the rest in order
    path = export_model(model, tmp_path / "m.pt", metadata={"iterations": 3})
    loaded = load_model(path)
    assert loaded.pipeline() == model.pipeline() and loaded.pipeline()[0] == "gamma"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    assert loaded.metadata["iterations"] == 3


def test_load_model_names_the_command_when_the_file_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="ispbench train posisp"):
        load_model(tmp_path / "missing.pt")
