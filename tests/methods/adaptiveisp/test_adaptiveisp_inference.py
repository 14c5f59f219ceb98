"""Inference: pipelines as data, greedy choice, truncation after k stages, STOP, export round trip."""

from __future__ import annotations

import math

import pytest
import torch

from ispbench import ops
from ispbench.methods.adaptiveisp.inference import load_policy, make_isp_fn, module_frequencies, run_policy
from ispbench.methods.adaptiveisp.networks import PolicyNet
from ispbench.methods.adaptiveisp.train import export_policy


class ScriptedPolicy(PolicyNet):
    """Picks exposure (+1 EV) at stage 0, gamma at stage 1, then STOP (reads the stage plane)."""

    def forward(self, state):
        logits, raw = super().forward(state)
        stage = (state[:, 13, 0, 0] * (5 if self.stage_plane == "fraction" else 1)).round().long()
        choice = torch.where(stage == 0, 0, torch.where(stage == 1, 3, 10))
        logits = torch.nn.functional.one_hot(choice, self.n_actions).float() * 50
        raw["exposure"] = torch.full_like(raw["exposure"], math.atanh(1 / 3.5))  # p = 3.5 tanh = 1 EV
        return logits, raw


@pytest.mark.parametrize("stage_plane", ["index", "fraction"])
def test_pipeline_as_data_and_stop(stage_plane):
    torch.manual_seed(0)
    policy = ScriptedPolicy(use_stop=True, param_heads="shared", stage_plane=stage_plane)
    x = torch.rand(3, 3, 32, 32) * 0.2
    run = run_policy(policy, x, T=5, return_stages=True)
    assert [step["module"] for step in run.pipelines[0]] == ["exposure", "gamma"]
    assert run.pipelines[0][0]["stage"] == 0 and abs(run.pipelines[0][0]["params"][0] - 1.0) < 1e-3
    assert run.module_index.tolist()[0] == [0, 3, -1, -1, -1]  # STOP at stage 2: later stages skipped
    assert len(run.stage_images) == 6
    assert torch.equal(run.stage_images[3], run.outputs) and torch.equal(run.stage_images[5], run.outputs)
    assert len(run.policy_ms) == len(run.isp_ms) == 5 and all(t >= 0 for t in run.stage_ms)
    assert torch.allclose(run.cost_ms, torch.full((3,), ops.MODULE_COST_MS["exposure"] + ops.MODULE_COST_MS["gamma"]))
    freqs = module_frequencies(run.pipelines, policy.module_names)
    assert freqs["exposure"] == 1.0 and freqs["ccm"] == 0.0


def test_truncate_after_k_stages_and_greedy_is_deterministic():
    torch.manual_seed(0)
    policy = PolicyNet(param_heads="shared")
    x = torch.rand(2, 3, 32, 32) * 0.2
    one = run_policy(policy, x, stages=1)
    assert one.module_index.shape == (2, 1) and all(len(p) == 1 for p in one.pipelines)
    a, b = run_policy(policy, x), run_policy(policy, x)
    assert torch.equal(a.outputs, b.outputs) and a.pipelines == b.pipelines
    assert all(len(p) == 5 for p in a.pipelines)
    assert float(a.outputs.min()) >= 0 and float(a.outputs.max()) <= 1


def test_export_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    policy = PolicyNet(param_heads="shared", disabled_modules=["denoise"]).eval()
    path = export_policy(policy, tmp_path / "p.pt", metadata={"note": "test"})
    loaded = load_policy(path)
    assert loaded.config() == policy.config()
    x = torch.rand(2, 3, 32, 32) * 0.3
    ra, rb = run_policy(policy, x), run_policy(loaded, x)
    assert [[s["module"] for s in p] for p in ra.pipelines] == [[s["module"] for s in p] for p in rb.pipelines]
    assert (ra.outputs - rb.outputs).abs().max() < 0.02  # float16 weights
    assert make_isp_fn(loaded)(x).shape == x.shape
    assert path.stat().st_size < 10 * 2**20


def test_forbid_reuse_never_repeats_a_module():
    torch.manual_seed(0)
    policy = PolicyNet(param_heads="shared")
    with torch.no_grad():  # make module 3 (gamma) the argmax everywhere
        policy.selector[-1].bias.fill_(0.0)
        policy.selector[-1].bias[3] = 100.0
    x = torch.rand(2, 3, 32, 32) * 0.2
    plain = run_policy(policy, x)
    assert all([s["module"] for s in p] == ["gamma"] * 5 for p in plain.pipelines)
    masked = run_policy(policy, x, forbid_reuse=True)
    for p in masked.pipelines:
        names = [s["module"] for s in p]
        assert names[0] == "gamma" and len(set(names)) == 5


def test_mask_reuse_policy_masks_by_default_and_survives_export(tmp_path):
    from ispbench.methods.adaptiveisp.train import export_policy

    torch.manual_seed(0)
    policy = PolicyNet(param_heads="shared", mask_reuse=True)
    with torch.no_grad():
        policy.selector[-1].bias.fill_(0.0)
        policy.selector[-1].bias[3] = 100.0
    loaded = load_policy(export_policy(policy, tmp_path / "p.pt"))
    assert loaded.mask_reuse
    x = torch.rand(2, 3, 32, 32) * 0.2
    for p in run_policy(loaded, x).pipelines:  # default: as trained (masked)
        assert len({s["module"] for s in p}) == 5
    assert all([s["module"] for s in p] == ["gamma"] * 5 for p in run_policy(loaded, x, forbid_reuse=False).pipelines)


def test_old_policy_files_load_with_the_former_inputs(tmp_path):
    """A config without stage_plane / contrast_stat (files written before them) means t / T and the std."""
    torch.manual_seed(2)
    policy = ScriptedPolicy(use_stop=True, param_heads="shared", stage_plane="fraction", contrast_stat="std")
    path = export_policy(policy, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    for key in ("stage_plane", "contrast_stat"):
        del payload["config"][key]
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_policy(tmp_path / "old.pt")
    assert (loaded.stage_plane, loaded.contrast_stat) == ("fraction", "std")
    new = load_policy(export_policy(PolicyNet(param_heads="shared"), tmp_path / "new.pt"))
    assert (new.stage_plane, new.contrast_stat) == ("index", "variance")
    shipped = load_policy()  # ispbench/weights/adaptiveisp_embedded.pt, trained with t / T and the std
    assert (shipped.stage_plane, shipped.contrast_stat) == ("fraction", "std")


def test_denoise_window_travels_with_the_policy(tmp_path):
    """A policy trained with a smaller Denoise window runs with it at inference, after export and load."""
    from unittest import mock

    from ispbench.methods.adaptiveisp.inference import load_policy, run_policy
    from ispbench.methods.adaptiveisp.networks import PolicyNet
    from ispbench.methods.adaptiveisp.train import export_policy
    from ispbench.ops import modules

    torch.manual_seed(0)
    policy = PolicyNet(param_heads="shared", denoise_window=5)
    loaded = load_policy(export_policy(policy, tmp_path / "p.pt"))
    assert loaded.denoise_window == 5 and PolicyNet().denoise_window == modules.NLM_SEARCH
    seen = []
    real = modules.nlm_search_window

    def spy(window):
        seen.append(window)
        return real(window)

    with mock.patch("ispbench.methods.adaptiveisp.inference.nlm_search_window", spy):
        run_policy(loaded, torch.rand(1, 3, 32, 32), stages=1)
    assert seen == [5]
    with pytest.raises(ValueError, match="denoise_window"):
        PolicyNet(denoise_window=4)
