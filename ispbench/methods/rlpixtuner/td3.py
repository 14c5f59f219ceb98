"""TD3 (Fujimoto et al. 2018) as RLPixTuner uses it (Sec. 3.4, eqs. 5-12, App. C.1).

The replay buffer is :mod:`.buffer`; the deployable policy and the inference loop :func:`tune`
are :mod:`.inference`.

* twin critics, target ``y = r + gamma (1 - d) min_i Q_i,targ(s', a')`` (eq. 5/8);
* target policy smoothing ``a' = clip(mu_targ(s') + clip(N(0, target_noise), -c, c), -1, 1)`` (eq. 9);
* delayed policy updates every ``policy_delay`` = 2 critic updates (Stable-Baselines3's default);
* targets by EMA ``theta_targ <- (1 - tau) theta_targ + tau theta`` (eqs. 10-12).

Defaults are the authors' ``train.sh`` (their modified Stable-Baselines3 TD3): actor lr 5e-4,
critic lr 5e-5, gamma 0.9, tau 0.007, target noise 0.04 clipped 0.01, no gradient clipping.
The paper's Appendix C.1 differs (actor 1e-4, critic 2e-4, tau 0.01, target noise 0.2 = twice the
exploration noise, clip not given; TD3's 0.5): :data:`PAPER_TD3`.
One addition, off by default
(``action_l2``): the HER-style penalty ``action_l2 * mean((a - base)^2)`` on the actor's actions
(``base`` = 0, or the current parameters with a residual actor), which keeps a young actor from
drifting to the corners of the action box where the critic has no data. Another, off by default
(``bc_weight``): hindsight goal regression ``bc_weight * mse(mu(s), a_g)`` on transitions whose goal was
rendered from known parameters ``a_g`` (stored in the buffer, NaN where unknown), through actor and
encoder, added to every critic update (GCSL / TD3+BC style; the shipped embedded policy uses 10).

Two more, off by default, against the collapse seen on a CPU budget (the actor following a still
uninformed critic to the ends of the slider range, where ``tanh`` saturates and its gradient
vanishes, so it never comes back): ``actor_warmup`` (critic-only updates for the first N
updates; the actor and its target stay at their initialisation) and ``preactivation_l2`` (the
penalty ``preactivation_l2 * mean(z^2)`` on the actor's pre-``tanh`` output ``z``: an action
penalty's gradient passes through ``tanh'`` as the critic's does, so saturation weakens both alike;
this one does not pass through ``tanh'`` and outweighs the critic there). And ``actor_final_init``:
DDPG's initialisation of the actor's output layer, ``U(-v, v)`` with ``v = 3e-3`` in Lillicrap et
al. 2016 (0 = PyTorch's default), so that the first actions are near 0: in the cumulative MDP ten
arbitrary edits of an untrained actor compound (the default initialisation scores 11 dB on the
validation pairs whose input is 17 dB before any actor update), near-zero ones keep the image.
All three are pure TD3: no supervised target.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ispbench.methods.rlpixtuner.buffer import Batch
from ispbench.methods.rlpixtuner.env import Observation
from ispbench.methods.rlpixtuner.networks import Actor, Critic, NetConfig, StateEncoder
from ispbench.methods.rlpixtuner.state import N_PARAMS


@dataclass
class TD3Config:
    """TD3 hyper-parameters (defaults: the authors' ``train.sh``; the paper's in :data:`PAPER_TD3`)."""

    actor_lr: float = 5e-4
    critic_lr: float = 5e-5
    gamma: float = 0.9
    tau: float = 0.007
    target_noise: float = 0.04
    target_noise_clip: float = 0.01
    policy_delay: int = 2
    grad_clip: float = 0.0
    action_l2: float = 0.0
    bc_weight: float = 0.0
    actor_warmup: int = 0
    preactivation_l2: float = 0.0
    actor_final_init: float = 0.0


#: The paper's Appendix C.1 values where they differ from the authors' code.
PAPER_TD3 = dict(actor_lr=1e-4, critic_lr=2e-4, tau=0.01, target_noise=0.2, target_noise_clip=0.5)


#: Adam's fused kernel: a third of a batch-2 update's time went to the per-tensor loop (profiled on CPU).
_FAST_ADAM = dict(fused=True)


def _clip(params: Any, max_norm: float) -> None:
    if max_norm > 0:  # 0: no clipping (Stable-Baselines3's TD3, the authors' code)
        torch.nn.utils.clip_grad_norm_(params, max_norm)


class TD3:
    """Shared state encoder + actor + twin critics, with EMA targets of all three.

    Args:
        net: architecture (:class:`NetConfig`).
        cfg: TD3 hyper-parameters.
        device: torch device.
        generator: torch generator for the target-policy noise (its state is checkpointed).
    """

    def __init__(self, net: NetConfig, cfg: TD3Config | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        self.net_cfg, self.cfg, self.device = net, cfg or TD3Config(), torch.device(device)
        self.encoder = StateEncoder(net).to(self.device)
        self.actor = Actor(net).to(self.device)
        if self.cfg.actor_final_init > 0:
            last = self.actor.net[-1]
            torch.nn.init.uniform_(last.weight, -self.cfg.actor_final_init, self.cfg.actor_final_init)
            torch.nn.init.uniform_(last.bias, -self.cfg.actor_final_init, self.cfg.actor_final_init)
        self.critic = Critic(net).to(self.device)
        self.encoder_targ = copy.deepcopy(self.encoder).requires_grad_(False)
        self.actor_targ = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_targ = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr, betas=(0.9, 0.999), **_FAST_ADAM)
        self.critic_opt = torch.optim.Adam(list(self.critic.parameters()) + list(self.encoder.parameters()),
                                           lr=self.cfg.critic_lr, betas=(0.9, 0.999), **_FAST_ADAM)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.n_updates = 0

    def _params(self, obs: Observation) -> torch.Tensor:
        return obs.vec[:, self.encoder.slices["params"]][:, :N_PARAMS]

    def _to(self, obs: Observation) -> Observation:
        return Observation(obs.cur64.to(self.device), obs.goal64.to(self.device), obs.vec.to(self.device))

    @torch.no_grad()
    def act(self, obs: Observation, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic action ``mu(s)`` (+ ``N(0, noise)`` exploration, clipped to [-1, 1]), on CPU."""
        self.encoder.eval(), self.actor.eval()
        o = self._to(obs)
        a = self.actor(self.encoder(o), self._params(o)).cpu()
        self.encoder.train(), self.actor.train()
        if noise > 0:
            a = a + noise * torch.randn(a.shape, generator=generator)
        return a.clamp(-1, 1)

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic update (and, every ``policy_delay``, one actor update + EMA of targets)."""
        c = self.cfg
        obs, next_obs = self._to(batch.obs), self._to(batch.next_obs)
        action, reward, done = (t.to(self.device) for t in (batch.action, batch.reward, batch.done))
        with torch.no_grad():
            nf = self.encoder_targ(next_obs)
            noise = (torch.randn(action.shape, generator=self.generator) * c.target_noise).clamp(-c.target_noise_clip, c.target_noise_clip)
            next_a = (self.actor_targ(nf, self._params(next_obs)) + noise.to(self.device)).clamp(-1, 1)
            q1t, q2t = self.critic_targ(nf, next_a)
            y = reward + c.gamma * (1 - done) * torch.min(q1t, q2t)
        feat = self.encoder(obs)
        q1, q2 = self.critic(feat, action)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        loss = critic_loss
        bc = None
        if c.bc_weight > 0 and batch.goal_action is not None:
            ga = batch.goal_action.to(self.device)
            known = ~torch.isnan(ga).any(1)
            if known.any():
                # hindsight goal regression (GCSL / TD3+BC style): the goal was rendered by the black
                # box from known parameters, the reward-maximising absolute action; trains actor and encoder
                bc = F.mse_loss(self.actor(feat[known], self._params(obs)[known]), ga[known])
                loss = loss + c.bc_weight * bc
        self.critic_opt.zero_grad(set_to_none=True)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        _clip(list(self.critic.parameters()) + list(self.encoder.parameters()), c.grad_clip)
        self.critic_opt.step()
        if bc is not None:
            _clip(self.actor.parameters(), c.grad_clip)
            self.actor_opt.step()
        self.n_updates += 1
        out = {"critic_loss": float(critic_loss.detach()), "q": float(q1.detach().mean())}
        if bc is not None:
            out["bc_loss"] = float(bc.detach())
        if self.n_updates % c.policy_delay == 0 and self.n_updates > c.actor_warmup:
            f = feat.detach()
            p = self._params(obs)
            z = self.actor.preactivation(f)
            pi = self.actor.squash(z, p)
            actor_loss = -self.critic(f, pi)[0].mean()  # eq. 7: maximise Q_1
            if c.action_l2:  # HER-style (Andrychowicz et al. 2017) penalty keeping actions off the box corners
                actor_loss = actor_loss + c.action_l2 * (pi - self.actor.base(p)).pow(2).mean()
            if c.preactivation_l2:  # keeps tanh out of saturation, where the critic's gradient cannot reach
                actor_loss = actor_loss + c.preactivation_l2 * z.pow(2).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            _clip(self.actor.parameters(), c.grad_clip)
            self.actor_opt.step()
            self.critic_opt.zero_grad(set_to_none=True)  # drop the actor loss' grads on the critic
            out["actor_loss"] = float(actor_loss.detach())
        if self.n_updates % c.policy_delay == 0:
            self.soft_update()  # targets follow on the actor's schedule, warm-up included
        return out

    @torch.no_grad()
    def soft_update(self) -> None:
        """EMA of all target networks (eqs. 10-12), ``tau = 1 - rho``."""
        tau = self.cfg.tau
        for net, targ in ((self.encoder, self.encoder_targ), (self.actor, self.actor_targ), (self.critic, self.critic_targ)):
            for p, pt in zip(net.parameters(), targ.parameters(), strict=True):
                pt.mul_(1 - tau).add_(p, alpha=tau)

    # -- (de)serialisation -----------------------------------------------------------------
    def policy_state(self) -> dict[str, Any]:
        """What inference needs: config + encoder + actor weights."""
        return {"net_config": self.net_cfg.to_dict(), "encoder": self.encoder.state_dict(), "actor": self.actor.state_dict()}

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.policy_state(), "td3_config": asdict(self.cfg), "critic": self.critic.state_dict(),
            "encoder_targ": self.encoder_targ.state_dict(), "actor_targ": self.actor_targ.state_dict(),
            "critic_targ": self.critic_targ.state_dict(), "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(), "generator": self.generator.get_state(), "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("encoder", "actor", "critic", "encoder_targ", "actor_targ", "critic_targ", "actor_opt", "critic_opt"):
            getattr(self, k).load_state_dict(state[k])
        self.generator.set_state(state["generator"])
        self.n_updates = int(state["n_updates"])


__all__ = ["TD3", "TD3Config", "PAPER_TD3"]
