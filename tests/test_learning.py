"""Seeded learning tests: each trains for real and asserts a return threshold.

Random-policy baselines (greedy evaluation is not random, so these are the uniform policy's
returns, measured with `_random_returns`): CartPole-v1 about 22, Pendulum-v1 about -1200,
Breakout-MinAtar about 0.5.
"""

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import envs
from a3c_jax.algorithms import rollout
from a3c_jax.training import evaluation

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

    policy = rollout.stateless(policy)
    play = jax.jit(lambda key: evaluation.play_episodes(spec, policy, None, key, episodes))
    return np.asarray(play(jax.random.PRNGKey(0)))


def test_thresholds_are_far_above_random():
    assert _random_returns("CartPole-v1").mean() < 40
    assert _random_returns("Pendulum-v1").mean() < -1000
    assert _random_returns("Breakout-MinAtar").mean() < 1.5
    assert _random_returns("Acrobot-v1").mean() < -400
    assert _random_returns("Catch-bsuite").mean() < 0.0


def test_a2c_solves_cartpole():
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="a2c"))
    assert returns.mean() >= 475.0, returns.mean()


def test_nstep_da2c_learns_cartpole():
    # The deck's algorithm, with its own defaults (no entropy bonus, plain n-step returns).
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="nstep_da2c"))
    assert returns.mean() >= 400.0, returns.mean()


def test_a2c_learns_pendulum_continuous():
    # Random policy: about -1200. The preset (gSDE, bound loss, 1M steps) swings the pendulum
    # up and holds it: measured -226.2 (seed 0, this CPU). The -200 target is the 8-seed mean
    # of the benchmark (-197.6, seeds -135 to -262); one seed is held to -275 (the previous
    # preset, 2M steps, gave -163.7 here but left one seed in 8 near random).
    returns = _train_and_evaluate(a3c_jax.Config(env_name="Pendulum-v1"), episodes=50)
    assert returns.mean() >= -275.0, (returns.mean(), _random_returns("Pendulum-v1").mean())


def test_a2c_learns_mountaincar_with_observation_normalisation():
    # Random policy: -200 (it never reaches the flag); the preset normalises observations.
    config = a3c_jax.Config(env_name="MountainCar-v0")
    assert config.normalize_obs
    returns = _train_and_evaluate(config, episodes=50)
    assert returns.mean() >= -125.0, returns.mean()  # measured: -116.7 (seed 0, this CPU)


def test_a2c_cnn_learns_minatar_breakout():
    # Random policy: about 0.5 per episode. The preset (CNN torso, 16 x 5 batches, entropy 0.06)
    # at a quarter of its 2M budget: measured 8.6 (seed 0, this CPU, 72 s). 6 is above the 5.55
    # every policy of the earlier preset stopped at, at 500k and at 2M alike.
    config = a3c_jax.Config(env_name="Breakout-MinAtar", total_timesteps=500_000)
    returns = _train_and_evaluate(config, episodes=50)
    assert returns.mean() >= 6.0, (returns.mean(), _random_returns("Breakout-MinAtar").mean())


# The rest of the first deck's path, each with its own defaults and the default 200k-step budget.
# Thresholds come from `benchmarks/progression.py` (8 seeds; README "The progression"): da2c
# reaches a greedy return near 500 on most seeds; the online and replay variants are weaker and
# vary more across seeds (below).


def test_da2c_learns_cartpole():
    returns = _train_and_evaluate(a3c_jax.Config(env_name="CartPole-v1", algo="da2c"))
    assert returns.mean() >= 400.0, returns.mean()


# Greedy return over 20 episodes of each seed (`split(PRNGKey(0), S)`, vmapped), measured on this
# project's 2-core CPU. online_ac, 8 seeds: 9, 500, 500, 500, 500, 78, 265, 500 (mean 357,
# standard error of the mean 74). ac_replay, 4 seeds: 73, 444, 490, 170 (mean 294, s.e. 102; the
# same four figures as the first four of 8 seeds). Single seeds range from random-like to solved,
# hence several; each threshold is the measured mean less two standard errors (random policy:
# about 22). ac_replay runs 4 seeds because its vmapped episodes wait for the slowest seed: 8
# seeds took 160 s to train, 4 seeds 34 s; online_ac's 8 seeds cost what 4 do (about 60 s).
VARIANTS = {"online_ac": (8, 200.0), "ac_replay": (4, 90.0)}  # algo: (seeds, threshold)


@pytest.mark.parametrize("algo", sorted(VARIANTS))
def test_online_and_replay_variants_beat_random_on_cartpole(algo):
    config = a3c_jax.Config(env_name="CartPole-v1", algo=algo)
    num_seeds, threshold = VARIANTS[algo]
    means = _seed_means(config, num_seeds, key_offset=0)
    assert np.mean(means) >= threshold, (means, _random_returns("CartPole-v1").mean())


def _seed_means(config: a3c_jax.Config, num_seeds: int, key_offset: int) -> list[float]:
    """Each seed's greedy return (20 episodes, key `key_offset + seed`) after training
    `num_seeds` seeds `split(PRNGKey(0), num_seeds)` at once."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    results = a3c_jax.jit_train(config, num_seeds=num_seeds)(keys)
    a3c_jax.check_finite(results)
    return [
        float(
            a3c_jax.evaluate(
                config,
                jax.tree.map(lambda x, s=s: x[s], results.params),
                jax.random.PRNGKey(key_offset + s),
                20,
            ).mean()
        )
        for s in range(num_seeds)
    ]


# The presets that train in well under a minute here, held to the figures the README's preset
# table and `benchmarks/check_presets.py` take from `presets.PRESET_RESULTS` (same seeds,
# evaluation keys and tolerance as the script). MountainCar-v0 is left out (its recorded figure
# is the random policy's: nothing to hold), Pendulum-v1 and Breakout-MinAtar as too slow for CI.
# Each also meets a floor of its own, what "solved" means there: Acrobot-v1 -100 (random -500),
# Catch-bsuite 0.8 (random about -0.4), CartPole-v1 300 (random about 22). Cost on a quiet
# 2-core CPU (the README's preset table): about 26 s, 30 s and 14 s, compile included.
CHEAP_PRESETS = {"CartPole-v1": 300.0, "Acrobot-v1": -100.0, "Catch-bsuite": 0.8}


@pytest.mark.parametrize("env_name", sorted(CHEAP_PRESETS))
def test_cheap_presets_reach_their_recorded_figures(env_name):
    from a3c_jax.config import presets

    recorded = presets.PRESET_RESULTS[(env_name, "a2c")]
    config = a3c_jax.Config(env_name=env_name, algo="a2c")
    assert config.total_timesteps == recorded["env_steps"]
    means = _seed_means(config, recorded["seeds"], key_offset=1000)
    target = recorded["return"] - presets.PRESET_TOLERANCE * abs(
        recorded["return"] - recorded["random"]
    )
    assert np.mean(means) >= target, (means, recorded)
    assert np.mean(means) >= CHEAP_PRESETS[env_name], means
