"""Environment wrappers: running statistics, normalisers, observation transforms, and the frozen
statistics that travel with the parameters to evaluation and `make_act`."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import a3c_jax
from a3c_jax import Config, ConfigError, envs
from a3c_jax.algorithms import build
from a3c_jax.envs import wrappers
from a3c_jax.runs import chunked
from a3c_jax.runs.checkpoint_file import flatten_state


def _assert_states_equal(a, b):
    flat_a, flat_b = flatten_state(a), flatten_state(b)
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path], flat_b[path], err_msg=path)


# Batches of a 2-feature sample, each of 1, 4 or 16 rows, with an offset and spread of their own.
batches = st.lists(
    st.tuples(
        st.sampled_from([1, 4, 16]),
        st.floats(-50, 50),
        st.floats(0.01, 20),
        st.integers(0, 2**31 - 1),
    ),
    min_size=1,
    max_size=8,
)


def _draw(spec):
    rows, offset, scale, seed = spec
    return offset + scale * np.random.default_rng(seed).standard_normal((rows, 2))


@settings(max_examples=30, deadline=None)
@given(batches, st.randoms(use_true_random=False))
def test_any_sequence_of_merges_gives_the_full_batch_statistics(specs, rng):
    data = [_draw(s) for s in specs]
    full = np.concatenate(data)
    # Sequential updates, in the order drawn.
    stats = wrappers.empty_stats((2,))
    for x in data:
        stats = wrappers.update(stats, jnp.asarray(x, jnp.float32))
    # And a random tree of merges: pair random neighbours until one is left.
    parts = [wrappers.batch_stats(jnp.asarray(x, jnp.float32)) for x in data]
    parts.append(wrappers.empty_stats((2,)))  # an empty side merges as nothing
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i : i + 2] = [wrappers.merge(parts[i], parts[i + 1])]
    for s in (stats, parts[0]):
        assert float(s.count) == full.shape[0]
        tol = 1e-4 * (1 + np.abs(full).max())
        np.testing.assert_allclose(s.mean, full.mean(0), rtol=1e-4, atol=tol)
        np.testing.assert_allclose(s.var, full.var(0), rtol=1e-3, atol=tol**2 + 1e-4)


def test_statistics_are_kept_per_seed_under_vmap():
    x = (
        jax.random.normal(jax.random.PRNGKey(0), (3, 5, 16, 2))
        * jnp.arange(1.0, 4.0)[:, None, None, None]
    )

    def run(xs):  # 5 batches of 16 for one seed
        return jax.lax.scan(
            lambda s, b: (wrappers.update(s, b), None), wrappers.empty_stats((2,)), xs
        )[0]

    stats = jax.vmap(run)(x)
    chex.assert_shape(stats.mean, (3, 2))
    flat = np.asarray(x).reshape(3, 80, 2)
    np.testing.assert_allclose(stats.mean, flat.mean(1), atol=1e-5)
    np.testing.assert_allclose(stats.var, flat.var(1), rtol=1e-4)


def test_normalize_centres_scales_and_clips():
    stats = wrappers.RunningStats(jnp.array([1.0, -2.0]), jnp.array([4.0, 0.25]), jnp.array(10.0))
    out = wrappers.normalize(stats, jnp.array([[3.0, -2.5], [101.0, -2.0]]), clip=5.0)
    np.testing.assert_allclose(out, [[1.0, -1.0], [5.0, 0.0]], rtol=1e-5)


def _played(config, steps=30, key=0):
    spec = build.env_spec(config)
    carry = envs.reset(spec, jax.random.PRNGKey(key), config.num_envs)

    def body(carry, k):
        action = jnp.zeros((config.num_envs, *spec.action_shape), jnp.float32)
        if spec.discrete:
            action = jax.random.randint(k, (config.num_envs,), 0, spec.num_actions)
        return envs.step(spec, k, carry, action)

    return (
        spec,
        carry,
        jax.lax.scan(body, carry, jax.random.split(jax.random.PRNGKey(key + 1), steps)),
    )


def test_normalize_obs_statistics_are_those_of_every_raw_observation():
    config = Config(env_name="Pendulum-v1", normalize_obs=True, obs_clip=1e6, num_envs=4)
    raw_config = config.replace(normalize_obs=False)
    _, _, (carry, traj) = _played(config)
    _, raw_first, (_, raw) = _played(raw_config)
    seen = np.concatenate([raw_first.obs[None], np.asarray(raw.next_obs)]).reshape(-1, 3)
    # next_obs is the pre-reset observation; no episode ends in 30 Pendulum steps, so the raw
    # observations played are exactly the reset ones and every next_obs.
    assert not np.any(np.asarray(raw.done))
    stats = jax.tree.map(np.asarray, carry.wrapper_state["normalize_obs"])
    assert float(stats.count) == seen.shape[0]
    np.testing.assert_allclose(stats.mean, seen.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.var, seen.var(0), rtol=1e-3)
    # The last next_obs is normalised with the final statistics.
    expected = (np.asarray(raw.next_obs[-1]) - stats.mean) / np.sqrt(stats.var + wrappers.EPSILON)
    np.testing.assert_allclose(traj.next_obs[-1], expected, rtol=1e-4, atol=1e-5)


def test_normalize_reward_scales_by_return_std_and_keeps_raw_episode_returns():
    config = Config(env_name="CartPole-v1", normalize_reward=True, num_envs=4, gamma=0.9)
    _, _, (_, traj) = _played(config, steps=60)
    _, _, (_, raw) = _played(config.replace(normalize_reward=False), steps=60)
    # Same episodes: the raw episode statistics are untouched.
    np.testing.assert_array_equal(traj.episode_return, raw.episode_return)
    np.testing.assert_array_equal(traj.done, raw.done)
    # Recompute R_t = γ R_{t-1} + r_t (0 after done) and its running variance by hand.
    ret = np.zeros(4)
    returns = []
    expected = []
    for t in range(60):
        ret = 0.9 * ret + np.asarray(raw.reward[t])
        returns.append(ret.copy())
        var = np.concatenate(returns).var()
        expected.append(np.asarray(raw.reward[t]) / np.sqrt(var + wrappers.EPSILON))
        ret = np.where(np.asarray(raw.done[t]), 0.0, ret)
    np.testing.assert_allclose(traj.reward, np.clip(expected, -10, 10), rtol=2e-4)
    assert not np.allclose(traj.reward, raw.reward)


def test_mask_velocity_and_frame_stack():
    config = Config(env_name="CartPole-v1", mask_velocity=True, frame_stack=3, num_envs=3)
    spec, first, (carry, traj) = _played(config, steps=40)
    assert spec.obs_shape == (6,)
    _, raw_first, (_, raw) = _played(config.replace(mask_velocity=False, frame_stack=1), steps=40)
    positions = np.asarray(raw.next_obs)[..., [0, 2]]  # [T, B, 2]
    # A fresh episode starts with its first observation 3 times.
    np.testing.assert_array_equal(first.obs, np.tile(np.asarray(raw_first.obs)[:, [0, 2]], 3))
    done = np.asarray(raw.done)
    assert done.any()  # random CartPole episodes end within 40 steps
    for b in range(3):
        frames = [np.asarray(raw_first.obs)[b, [0, 2]]] * 3
        for t in range(40):
            frames = [*frames[1:], positions[t, b]]
            np.testing.assert_allclose(traj.next_obs[t, b], np.concatenate(frames), atol=0)
            if done[t, b]:
                start = np.asarray(traj.obs[t + 1, b]) if t + 1 < 40 else np.asarray(carry.obs[b])
                frames = [start[:2]] * 3
                np.testing.assert_array_equal(start, np.tile(start[:2], 3))


def test_make_act_and_evaluate_apply_the_frozen_statistics():
    config = Config(
        env_name="Pendulum-v1", normalize_obs=True, num_envs=4, n_steps=4, total_timesteps=800
    )
    result = a3c_jax.jit_train(config)(jax.random.PRNGKey(0))
    stats = result.runner_state.env.wrapper_state["normalize_obs"]
    np.testing.assert_array_equal(result.params[wrappers.OBS_STATS]["mean"], stats.mean)
    assert float(jnp.max(jnp.abs(stats.mean))) > 0.01  # the statistics moved away from (0, 1)
    raw = jnp.array([[0.3, -0.9, 4.0], [-1.0, 0.0, -7.0]])
    act = a3c_jax.make_act(config, result.params)
    plain = {"params": result.params["params"]}
    by_hand = a3c_jax.make_act(config, plain)(wrappers.normalize(stats, raw, config.obs_clip))
    np.testing.assert_allclose(act(raw), by_hand, rtol=1e-6)
    assert not np.allclose(a3c_jax.make_act(config, plain)(raw), by_hand)
    # evaluate plays the raw environment through the same normalisation.
    returns = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1), num_episodes=2)
    assert returns.shape == (2,) and bool(jnp.all(jnp.isfinite(returns)))


def test_resume_with_normalisation_is_bitwise(tmp_path):
    config = Config(
        env_name="Pendulum-v1",
        normalize_obs=True,
        normalize_reward=True,
        num_envs=2,
        n_steps=4,
        total_timesteps=2 * 4 * 200,
    )
    kwargs = dict(chunk_updates=50, progress=False, log=lambda _: None)
    straight = chunked.train_run(config, tmp_path / "straight", **kwargs)
    first = chunked.train_run(config, tmp_path / "resumed", stop_after=100, **kwargs)
    assert first.status == "stopped" and first.update == 100
    second = chunked.train_run(config, tmp_path / "resumed", resume=True, **kwargs)
    assert second.status == "finished" and second.update == 200
    assert "normalize_reward" in second.runner_state.env.wrapper_state
    _assert_states_equal(straight.runner_state, second.runner_state)
    loaded = a3c_jax.load(tmp_path / "resumed")
    np.testing.assert_array_equal(
        loaded.params[wrappers.OBS_STATS]["var"],
        straight.runner_state.env.wrapper_state["normalize_obs"].var,
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"frame_stack": 0}, "frame_stack=0"),
        ({"obs_clip": -1.0}, "obs_clip=-1.0"),
        ({"normalize_obs": "yes"}, "normalize_obs='yes'"),
        ({"env_name": "Breakout-MinAtar", "mask_velocity": True}, "mask_velocity=True"),
        ({"algo": "a3c", "normalize_reward": True}, "normalize_reward=True"),
    ],
)
def test_bad_wrapper_fields_are_named(fields, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Config(**fields)
