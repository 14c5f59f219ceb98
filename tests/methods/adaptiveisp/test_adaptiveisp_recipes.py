"""The named policy recipes: ``paper`` = the trainer's defaults (authors' code), ``cpu`` = the listed shortcuts."""

from __future__ import annotations

import dataclasses

import pytest

from ispbench.methods.adaptiveisp import recipes
from ispbench.methods.adaptiveisp.train import Args
from ispbench.training.config import from_overrides

PARAMS = dict(seed=0, device="cpu", data_root="", dataset="lod", detector_weights="", imgsz=160, iterations=10, lr=1e-4)


def test_paper_recipe_is_the_trainers_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(Args) if f.default is not dataclasses.MISSING}
    assert {k: defaults[k] for k in recipes.PAPER_RECIPE} == recipes.PAPER_RECIPE
    assert (defaults["gamma"], defaults["grad_clip"], defaults["epsilon_mode"], defaults["stage_plane"],
            defaults["contrast_stat"]) == (1.0, 1e-5, "mixed", "index", "variance")


def test_cpu_shortcuts_list_every_difference_from_the_paper_recipe():
    cpu = {**recipes.CPU_RECIPE, "lr": recipes.CPU_SHORTCUTS["lr"][0]}
    differ = {k for k in set(cpu) | set(recipes.PAPER_RECIPE)
              if cpu.get(k, recipes.PAPER_RECIPE.get(k)) != recipes.PAPER_RECIPE.get(k, Args.__dataclass_fields__[k].default)}
    assert differ == set(recipes.CPU_SHORTCUTS)
    for name, (ours, paper, why) in recipes.CPU_SHORTCUTS.items():
        assert why and paper == recipes.PAPER_RECIPE[name], name
        assert name == "lr" or ours == recipes.CPU_RECIPE[name], name
    # the CPU recipe keeps the settings the shipped embedded policy was trained with
    assert recipes.CPU_NUMERICS == dict(gamma=0.99, grad_clip=1.0, epsilon_mode="replace", stage_plane="fraction",
                                        contrast_stat="std")
    assert recipes.CPU_RECIPE["disabled_modules"] == ("" if recipes.CPU_ALLOWS_DENOISE else "denoise")


def test_policy_train_args_pick_the_recipe():
    cpu = recipes.policy_train_args(PARAMS)
    assert cpu["param_heads"] == "shared" and cpu["mask_reuse"] and cpu["selector_lr"] == cpu["lr"] == 1e-4
    assert cpu["gamma"] == 0.99 and cpu["stage_plane"] == "fraction"
    assert recipes.policy_train_args({**PARAMS, "recipe": "cpu", "profile": "paper"}) == cpu
    real = {**PARAMS, "data_root": "/data/lod", "lr": 3e-5}
    for params in ({**real, "recipe": "paper"}, {**real, "profile": "paper"}):  # the notebook parameter, or the profile
        paper = recipes.policy_train_args(params)
        assert paper["param_heads"] == "per_module" and paper["disabled_modules"] == "" and paper["param_objective"] == "q"
        assert not paper["mask_reuse"] and paper["lr_decay"] and paper["dataset"] == "lod"
        args = from_overrides(Args, paper)
        assert args.gamma == 1.0 and args.grad_clip == 1e-5 and args.epsilon_mode == "mixed" and args.detection.data_root
    assert from_overrides(Args, cpu).contrast_stat == "std"


def test_paper_recipe_refuses_without_the_real_dataset():
    with pytest.raises(ValueError, match="recipe 'paper'.*data_root"):
        recipes.policy_train_args({**PARAMS, "recipe": "paper"})
    with pytest.raises(ValueError, match="data_root"):
        recipes.policy_train_args({**PARAMS, "profile": "paper"})
    with pytest.raises(ValueError, match="recipe: expected one of"):
        recipes.policy_train_args({**PARAMS, "recipe": "gpu"})
