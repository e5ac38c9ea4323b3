"""Policy distributions: the squashed Gaussian's bounds and log-probability, and the
state-dependent standard deviation of the Gaussian heads."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from a3c_jax import Config, envs, evaluation
from a3c_jax.distributions import DiagGaussian, SquashedGaussian
from a3c_jax.networks import make_networks

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
        make_networks(Config(env_name="Pendulum-v1"), spec).policy(params, jnp.zeros((5, 3))),
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
