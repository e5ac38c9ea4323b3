"""V-trace (`returns.vtrace`) against the paper's definition written as a numpy sum, against
rlax's `vtrace` where rlax is installed, and against the n-step returns on-policy."""

import importlib.util

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a3c_jax.core import returns

GAMMA = 0.9


def _trajectory(seed: int, num_steps: int = 12, batch: tuple[int, ...] = ()):
    """Random values, rewards, ratios in [0.2, 3] and terminations (discount 0) at ~25% of
    steps; `v_t[s] = v_tm1[s + 1]` (the next state's value), `v_t[-1]` the bootstrap."""
    rng = np.random.default_rng(seed)
    shape = (num_steps, *batch)
    values = rng.normal(size=(num_steps + 1, *batch)).astype(np.float32)
    r_t = rng.normal(size=shape).astype(np.float32)
    discount_t = np.where(rng.random(shape) < 0.25, 0.0, GAMMA).astype(np.float32)
    rho_tm1 = np.exp(rng.uniform(np.log(0.2), np.log(3.0), shape)).astype(np.float32)
    return values[:-1], values[1:], r_t, discount_t, rho_tm1


def _paper_vtrace(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_, rho_clip, c_clip):
    """IMPALA's eq. 1 as written: `v_s = V(x_s) + Σ_{t≥s} (Π_{s≤i<t} γ_i c_i) δ_t V`, with
    `δ_t V = ρ_t (r_t + γ_t V(x_{t+1}) - V(x_t))`, a double loop in float64."""
    v_tm1, v_t, r_t, discount_t, rho_tm1 = (
        np.asarray(x, np.float64) for x in (v_tm1, v_t, r_t, discount_t, rho_tm1)
    )
    num_steps = len(r_t)
    rho = np.minimum(rho_clip, rho_tm1)
    c = lambda_ * np.minimum(c_clip, rho_tm1)
    delta = rho * (r_t + discount_t * v_t - v_tm1)
    targets = np.empty(num_steps)
    for s in range(num_steps):
        total, trace = 0.0, 1.0
        for t in range(s, num_steps):
            total += trace * delta[t]
            trace *= discount_t[t] * c[t]
        targets[s] = v_tm1[s] + total
    return targets


class VTraceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_equals_the_papers_definition(self):
        for seed, lambda_, rho_clip, c_clip in [
            (0, 1.0, 1.0, 1.0),
            (1, 0.9, 1.0, 1.0),
            (2, 1.0, 2.0, 0.5),
            (3, 0.8, np.inf, 1.5),
        ]:
            traj = _trajectory(seed)
            fn = self.variant(returns.vtrace, static_argnums=(5, 6, 7))
            got = fn(*traj, lambda_, rho_clip, c_clip)
            chex.assert_shape(got, (12,))
            want = _paper_vtrace(*traj, lambda_, rho_clip, c_clip)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_on_policy_it_is_the_nstep_return(self):
        # π = μ: every ratio is 1, and V-trace's target is the bootstrapped n-step return the
        # trainers use (`discounted_returns`), whatever the clipping thresholds.
        v_tm1, v_t, r_t, discount_t, _ = _trajectory(4, batch=(3,))
        ones = np.ones_like(r_t)
        got = self.variant(returns.vtrace)(v_tm1, v_t, r_t, discount_t, ones)
        want = returns.discounted_returns(r_t, discount_t, v_t[-1])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        out = self.variant(returns.vtrace_td_error_and_advantage)(v_tm1, v_t, r_t, discount_t, ones)
        np.testing.assert_allclose(out.errors, want - v_tm1, rtol=1e-5, atol=1e-5)
        # On-policy, λ = 1: the actor's advantage r_s + γ_s G_{s+1} - V(x_s) = G_s - V(x_s).
        np.testing.assert_allclose(out.pg_advantage, want - v_tm1, rtol=1e-5, atol=1e-5)

    def test_batched_time_major_is_each_column(self):
        traj = _trajectory(5, batch=(4, 2))
        got = returns.vtrace(*traj, 0.95, 1.0, 1.0)
        chex.assert_shape(got, (12, 4, 2))
        for i in range(4):
            for j in range(2):
                column = [x[:, i, j] for x in traj]
                np.testing.assert_allclose(
                    got[:, i, j], returns.vtrace(*column, 0.95), rtol=1e-6, atol=1e-6
                )

    def test_termination_stops_the_trace(self):
        # Terminated at s = 1 (discount 0): the target of step 0 does not see steps 2.. .
        v_tm1, v_t, r_t, discount_t, rho_tm1 = _trajectory(6, num_steps=5)
        discount_t[1] = 0.0
        changed = r_t.copy()
        changed[2:] += 100.0
        a = returns.vtrace(v_tm1, v_t, r_t, discount_t, rho_tm1)
        b = returns.vtrace(v_tm1, v_t, changed, discount_t, rho_tm1)
        np.testing.assert_allclose(a[:2], b[:2], rtol=1e-6)
        assert not np.allclose(a[2:], b[2:])

    def test_targets_hold_still_unless_asked(self):
        traj = _trajectory(7, num_steps=4)

        def total(v_tm1, stop):
            return returns.vtrace(v_tm1, *traj[1:], stop_target_gradients=stop).sum()

        assert np.all(jax.grad(total)(traj[0], True) == 0.0)
        assert np.any(jax.grad(total)(traj[0], False) != 0.0)

    def test_shape_mismatch_is_refused(self):
        v_tm1, v_t, r_t, discount_t, rho_tm1 = _trajectory(8)
        with pytest.raises(AssertionError):
            returns.vtrace(v_tm1, v_t[:-1], r_t, discount_t, rho_tm1)


@pytest.mark.skipif(
    importlib.util.find_spec("rlax") is None, reason="rlax is not installed (pip install rlax)"
)
class RlaxTest(chex.TestCase):
    """rlax's V-trace over one trajectory `[T]`, whose trace threshold is fixed at `c̄ = 1`."""

    def test_equals_rlax_vtrace(self):
        # rlax's `vtrace` returns the errors `v_s - V(x_s)`, ours the targets `v_s`.
        import rlax

        for seed in range(5):
            for lambda_, rho_clip in ((1.0, 1.0), (0.9, 1.0), (1.0, 2.5)):
                traj = _trajectory(seed, num_steps=20)
                got = returns.vtrace(*traj, lambda_, rho_clip, 1.0)
                want = rlax.vtrace(*map(jnp.asarray, traj), lambda_, rho_clip)
                np.testing.assert_allclose(got - traj[0], want, rtol=1e-5, atol=1e-5)

    def test_equals_rlax_errors_and_advantages(self):
        import rlax

        for seed in range(5):
            for lambda_, rho_clip, pg_clip in ((1.0, 1.0, 1.0), (0.9, 1.0, 2.0)):
                traj = _trajectory(seed + 10, num_steps=20)
                got = returns.vtrace_td_error_and_advantage(*traj, lambda_, rho_clip, 1.0, pg_clip)
                want = rlax.vtrace_td_error_and_advantage(
                    *map(jnp.asarray, traj), lambda_, rho_clip, pg_clip
                )
                for a, b in zip(got, want, strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
