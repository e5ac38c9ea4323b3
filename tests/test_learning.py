"""Seeded learning tests: each trains for real and asserts a return threshold.

Random-policy baselines (greedy evaluation is not random, so these are the uniform policy's
returns, measured with `_random_returns`): CartPole-v1 about 22, Pendulum-v1 about -1200,
Breakout-MinAtar about 0.5.
"""

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import envs, evaluation

pytestmark = pytest.mark.slow


def _train_and_evaluate(config: a3c_jax.Config, seed: int = 0, episodes: int = 100) -> np.ndarray:
    result = a3c_jax.jit_train(config)(jax.random.PRNGKey(seed))
    returns = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(seed + 1000), episodes)
    return np.asarray(returns)


def _random_returns(env_name: str, episodes: int = 50) -> np.ndarray:
    """Returns of the uniform random policy (the baseline the thresholds are set against)."""
    spec = envs.make_env(env_name)

    def policy(params, obs, key):
        n = obs.shape[0]
        if spec.discrete:
            return jax.random.randint(key, (n,), 0, spec.num_actions)
        return jax.random.uniform(
            key, (n, spec.num_actions), minval=spec.action_low, maxval=spec.action_high
        )

    play = jax.jit(lambda key: evaluation.play_episodes(spec, policy, None, key, episodes))
    return np.asarray(play(jax.random.PRNGKey(0)))


def test_thresholds_are_far_above_random():
    assert _random_returns("CartPole-v1").mean() < 40
    assert _random_returns("Pendulum-v1").mean() < -1000
    assert _random_returns("Breakout-MinAtar").mean() < 1.5


def test_a2c_solves_cartpole():
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="a2c"))
    assert returns.mean() >= 475.0, returns.mean()


def test_nstep_da2c_learns_cartpole():
    # The deck's algorithm, with its own defaults (no entropy bonus, plain n-step returns).
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="nstep_da2c"))
    assert returns.mean() >= 400.0, returns.mean()


def test_a2c_learns_pendulum_continuous():
    # Random policy: about -1200. The preset (normalised observations, 2M steps) swings the
    # pendulum up and holds it: measured -180.7 (seed 0, this CPU); the target is -200.
    returns = _train_and_evaluate(a3c_jax.Config(env_name="Pendulum-v1"), episodes=50)
    assert returns.mean() >= -200.0, (returns.mean(), _random_returns("Pendulum-v1").mean())


def test_a2c_learns_mountaincar_with_observation_normalisation():
    # Random policy: -200 (it never reaches the flag); the preset normalises observations.
    config = a3c_jax.Config(env_name="MountainCar-v0")
    assert config.normalize_obs
    returns = _train_and_evaluate(config, episodes=50)
    assert returns.mean() >= -125.0, returns.mean()  # measured: -116.7 (seed 0, this CPU)


def test_a2c_cnn_learns_minatar_breakout():
    # Random policy: about 0.5 per episode; 3 is six times that. The CNN torso is chosen for
    # Breakout's [10, 10, 4] observations.
    returns = _train_and_evaluate(a3c_jax.Config(env_name="Breakout-MinAtar"), episodes=50)
    assert returns.mean() >= 3.0, (returns.mean(), _random_returns("Breakout-MinAtar").mean())


# The rest of the first deck's path, each with its own defaults and the default 200k-step budget.
# Thresholds come from `benchmarks/progression.py` (8 seeds; README "The progression"): da2c
# reaches a greedy return near 500 on most seeds; the online and replay variants are weaker and
# vary more across seeds, so for them the test asserts they clearly beat a random policy (~22).


def test_da2c_learns_cartpole():
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="da2c"))
    assert returns.mean() >= 400.0, returns.mean()


@pytest.mark.parametrize("algo", ["online_ac", "ac_replay"])
def test_online_and_replay_variants_beat_random_on_cartpole(algo):
    # Over 8 seeds these reach greedy returns of 373 ± 182 (online_ac) and 252 ± 154
    # (ac_replay): single seeds vary too much to test one, so train 4 at once (vmap) and assert
    # their mean is over four times the random policy's.
    config = a3c_jax.Config(env_name="CartPole-v1", algo=algo)
    results = a3c_jax.jit_train(config, num_seeds=4)(jax.random.split(jax.random.PRNGKey(0), 4))
    means = [
        float(
            a3c_jax.evaluate(
                config, jax.tree.map(lambda x, s=s: x[s], results.params), jax.random.PRNGKey(s), 20
            ).mean()
        )
        for s in range(4)
    ]
    assert np.mean(means) >= 100.0, (means, _random_returns("CartPole-v1").mean())
