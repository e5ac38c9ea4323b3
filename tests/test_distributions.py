"""Policy distributions: the squashed Gaussian's bounds and log-probability, the
state-dependent standard deviation of the Gaussian heads, and gSDE's state-dependent noise."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from a3c_jax import Config, envs
from a3c_jax.algorithms import rollout
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.core.distributions import DiagGaussian, SquashedGaussian, StateDependentGaussian
from a3c_jax.training import evaluation

LOW = jnp.array([-2.0, 0.0, -0.5])
HIGH = jnp.array([2.0, 1.0, 3.0])


@settings(max_examples=25, deadline=None)
@given(
    st.floats(-1e3, 1e3),
    st.floats(-20.0, 2.0),
    st.integers(0, 2**31 - 1),
)
def test_squashed_gaussian_never_leaves_the_bounds(mean, log_std, seed):
    pi = SquashedGaussian(jnp.full((64, 3), mean), jnp.full((64, 3), log_std), LOW, HIGH)
    for action in (pi.sample(jax.random.PRNGKey(seed)), pi.mode()):
        a = np.asarray(action)
        assert np.all(a >= np.asarray(LOW)) and np.all(a <= np.asarray(HIGH)), (a.min(0), a.max(0))
    assert np.all(np.isfinite(pi.log_prob(pi.sample(jax.random.PRNGKey(seed)))))


def test_squashed_log_prob_matches_the_change_of_variables(key):
    mean = jax.random.normal(key, (200, 3))
    log_std = jnp.log(jax.random.uniform(jax.random.PRNGKey(1), (200, 3), minval=0.2, maxval=1.5))
    pi = SquashedGaussian(mean, log_std, LOW, HIGH)
    u = np.asarray(mean) + np.exp(np.asarray(log_std)) * np.random.default_rng(0).normal(
        size=(200, 3)
    )
    centre, scale = (
        (np.asarray(HIGH) + np.asarray(LOW)) / 2,
        (np.asarray(HIGH) - np.asarray(LOW)) / 2,
    )
    action = centre + scale * np.tanh(u)
    # float64 reference: log N(u) - log |da/du|, da/du = s (1 - tanh²(u)).
    reference = np.sum(
        stats.norm.logpdf(u, np.asarray(mean), np.exp(np.asarray(log_std)))
        - np.log(scale * (1 - np.tanh(u) ** 2)),
        axis=-1,
    )
    got = pi.log_prob(jnp.asarray(action, jnp.float32))
    np.testing.assert_allclose(got, reference, rtol=2e-3, atol=2e-3)


def test_squashed_density_integrates_to_one():
    low, high = jnp.array([-1.5]), jnp.array([2.5])
    grid = np.linspace(-1.5, 2.5, 200_001)[1:-1]
    n = grid.shape[0]
    pi = SquashedGaussian(jnp.full((n, 1), 0.7), jnp.full((n, 1), -0.3), low, high)
    density = np.exp(np.asarray(pi.log_prob(jnp.asarray(grid, jnp.float32)[:, None])))
    assert abs(np.trapezoid(density, grid) - 1.0) < 2e-3


def test_squashed_gaussian_is_used_with_tanh_bounding(key):
    spec = envs.make_env("Pendulum-v1")
    nets = make_networks(Config(env_name="Pendulum-v1", action_bounding="tanh"), spec)
    params = nets.init(key)
    pi = nets.policy(params, jnp.zeros((5, 3)))
    assert isinstance(pi, SquashedGaussian)
    np.testing.assert_array_equal(pi.low, spec.action_low)
    np.testing.assert_array_equal(pi.high, spec.action_high)
    assert isinstance(
        make_networks(Config(env_name="Pendulum-v1", use_sde=False), spec).policy(
            params, jnp.zeros((5, 3))
        ),
        DiagGaussian,
    )


def test_clipped_gaussian_actions_reach_the_environment_inside_the_bounds(key):
    config = Config(env_name="Pendulum-v1", log_std_init=2.0)
    spec = envs.make_env("Pendulum-v1")
    nets = make_networks(config, spec)
    params = nets.init(key)
    obs = jax.random.normal(key, (256, 3))
    raw = nets.policy(params, obs).sample(key)
    assert float(jnp.max(jnp.abs(raw))) > 2.0  # the Gaussian itself leaves [-2, 2]
    for greedy in (True, False):
        first = jnp.zeros(obs.shape[:1], bool)
        policy = evaluation.acting_policy(nets, spec, greedy)
        action, _ = policy(params, obs, first, nets.initial_state(256), key)
        assert float(jnp.max(jnp.abs(action))) <= 2.0
    assert float(jnp.max(jnp.abs(envs.clip_action(spec, raw)))) <= 2.0


def test_state_dependent_std(key):
    config = Config(env_name="Pendulum-v1", state_dependent_std=True, log_std_init=-1.0)
    nets = make_networks(config, envs.make_env("Pendulum-v1"))
    params = nets.init(key)
    assert "log_std" not in params["params"] and "log_std_head" in params["params"]
    obs = jax.random.normal(key, (7, 3)) * 3
    pi = nets.policy(params, obs)
    chex.assert_shape(pi.log_std, (7, 1))
    np.testing.assert_allclose(pi.log_std, -1.0, atol=0.2)  # starts near log_std_init
    assert float(jnp.std(pi.log_std)) > 0  # and depends on the state
    # It is trained: the log-probability's gradient reaches the log-std head.
    grads = jax.grad(lambda p: jnp.sum(nets.policy(p, obs).log_prob(jnp.ones((7, 1)))))(params)
    assert float(jnp.max(jnp.abs(grads["params"]["log_std_head"]["kernel"]))) > 0


def _sde(key, batch=6, features=5, dims=2):
    k1, k2, k3 = jax.random.split(key, 3)
    mean = jax.random.normal(k1, (batch, dims))
    phi = jnp.tanh(jax.random.normal(k2, (batch, features)))
    log_std = jax.random.uniform(k3, (features, dims), minval=-2.0, maxval=0.5)
    return StateDependentGaussian(mean, phi, log_std)


def test_sde_log_prob_matches_a_reference(key):
    pi = _sde(key)
    action = pi.mean + jax.random.normal(jax.random.PRNGKey(3), pi.mean.shape)
    phi, sigma = np.asarray(pi.features, np.float64), np.exp(np.asarray(pi.log_std, np.float64))
    std = np.sqrt(phi**2 @ sigma**2 + StateDependentGaussian.VARIANCE_EPS)  # [B, d]
    mean, a = np.asarray(pi.mean, np.float64), np.asarray(action, np.float64)
    np.testing.assert_allclose(
        pi.log_prob(action), stats.norm.logpdf(a, mean, std).sum(-1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(pi.entropy(), stats.norm.entropy(mean, std).sum(-1), rtol=1e-5)
    np.testing.assert_array_equal(pi.mode(), pi.mean)


def test_sde_samples_have_the_stated_variance(key):
    pi = _sde(key, batch=3, features=4, dims=2)
    keys = jax.random.split(jax.random.PRNGKey(7), 40_000)
    draws = np.asarray(jax.vmap(pi.sample)(keys))  # [N, B, d]
    expected = np.exp(2 * np.asarray(pi.gaussian().log_std))
    np.testing.assert_allclose(draws.mean(0), pi.mean, atol=0.02)
    np.testing.assert_allclose(draws.var(0), expected, rtol=0.04)
    # One key: one noise matrix for the whole batch, so the noise is φ(s) W for a single W.
    w = pi.noise_matrix(keys[0])
    np.testing.assert_allclose(draws[0], pi.mean + pi.features @ w, rtol=1e-5, atol=1e-6)


def test_sde_networks_and_gradients(key):
    config = Config(env_name="Pendulum-v1", use_sde=True, log_std_init=-2.0)
    nets = make_networks(config, envs.make_env("Pendulum-v1"))
    params = nets.init(key)
    chex.assert_shape(params["params"]["log_std"], (64, 1))
    obs = jax.random.normal(key, (7, 3))
    pi = nets.policy(params, obs)
    assert isinstance(pi, StateDependentGaussian)
    chex.assert_shape(pi.features, (7, 64))

    def log_prob(p):
        pi = nets.policy(p, obs)
        return jnp.sum(pi.log_prob(pi.mean + 0.3))

    grads = jax.grad(log_prob)(params)["params"]
    assert float(jnp.max(jnp.abs(grads["log_std"]))) > 0
    # The features enter the variance with their gradient stopped: at the mean plus a fixed
    # offset, only the variance depends on the torso, so its gradient is zero.
    torso = jax.tree.leaves(grads["actor_torso"])
    assert max(float(jnp.max(jnp.abs(g))) for g in torso) == 0.0


def test_sde_noise_is_held_for_sde_sample_freq_steps():
    keys = rollout.rollout_keys(jax.random.PRNGKey(0), jnp.arange(3), 8, hold=3)  # [T, 2, B]
    action, step = np.asarray(keys[:, 0]), np.asarray(keys[:, 1])
    for t in range(8):
        np.testing.assert_array_equal(action[t], action[t - t % 3])
    assert len({action[t].tobytes() for t in range(8)}) == 3
    assert len({step[t].tobytes() for t in range(8)}) == 8  # the environments' keys are not held
    plain = np.asarray(rollout.rollout_keys(jax.random.PRNGKey(0), jnp.arange(3), 8))
    np.testing.assert_array_equal(action[::3], plain[::3, 0])  # each window's first key
    np.testing.assert_array_equal(step, plain[:, 1])


def test_sde_rollout_keeps_one_noise_matrix_per_environment(key):
    # a2c's collection with gSDE: over the rollout (sde_sample_freq=-1) each environment's
    # action is μ(s_t) + φ(s_t) W with one W, drawn from its action key of the first step.
    from a3c_jax.algorithms import actor_critic

    config = Config(env_name="Pendulum-v1", num_envs=3, n_steps=6)
    assert config.use_sde and config.sde_sample_freq == -1
    spec = envs.make_env("Pendulum-v1")
    nets = make_networks(config, spec)
    params = nets.init(key)
    carry = envs.reset(spec, jax.random.PRNGKey(1), config.num_envs)
    rollout_key = jax.random.PRNGKey(2)
    _, traj, _ = actor_critic.nstep_collect(spec, nets, config, params, carry, rollout_key)
    keys = rollout.rollout_keys(rollout_key, carry.env_id, config.n_steps, config.n_steps)
    pi = nets.policy(params, traj.obs)  # [T, B]
    for b in range(config.num_envs):
        w = pi.noise_matrix(keys[0, 0, b])  # [H, d]
        expected = pi.mean[:, b] + pi.features[:, b] @ w  # [T, d]
        np.testing.assert_allclose(traj.action[:, b], expected, rtol=1e-4, atol=1e-5)
