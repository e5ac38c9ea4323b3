"""Reliability: inputs validated before any compile, determinism, the divergence guard, run
folders and checkpoints that are never lost or silently wrong, and property-based tests of the
pure functions against plain-Python references."""

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import a3c_jax
from a3c_jax import Config, ConfigError
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.cli.main import main
from a3c_jax.core import losses, returns
from a3c_jax.core.distributions import Categorical, DiagGaussian
from a3c_jax.core.types import DIVERGED_GRADIENT, DIVERGED_LOSS, DIVERGED_PARAMS
from a3c_jax.runs import checkpoint_file, chunked
from a3c_jax.runs.checkpoint_file import flatten_state
from a3c_jax.training.loop import DivergenceError, compiler_options, divergence

SMALL = Config(num_envs=4, n_steps=4, total_timesteps=4 * 4 * 40)  # 40 updates
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# One jitted (and so, once compiled) training function shared by the tests below.
train_small = a3c_jax.jit_train(SMALL)


@pytest.fixture(scope="module")
def small_result():
    return train_small(jax.random.PRNGKey(0))


def _quiet(_: str) -> None:
    pass


class _CompileCounter:
    """Counts XLA compilations (JAX's backend-compile monitoring events) while active."""

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


def test_the_compile_counter_sees_a_real_compile():
    """The positive control of the "nothing compiles" assertions below: the counter moves when
    something does compile (a function of a shape never compiled before), so they cannot pass
    merely because JAX renamed the event."""
    with _CompileCounter() as compiles:
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(17.0)).block_until_ready()
    assert compiles.count >= 1
    with _CompileCounter() as compiles:
        code = main(["train", "--no-cache", "--dry-run", "--set", "num_envs=4"])
    assert code == 0 and compiles.count == 0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--env", "CartPol-v1"], "did you mean 'CartPole-v1'"),
        (["--algo", "a2d"], "algo='a2d' is not an algorithm here; choose one of"),
        (["--set", "num_envs=0"], "num_envs=0 must be a positive integer"),
        (["--set", "n_steps=-3"], "n_steps=-3 must be a positive integer"),
        (["--set", "lr=0"], "lr=0.0 must lie in (0.0, inf]"),
        (["--set", "lr=-1e-3"], "lr=-0.001"),
        (["--set", "total_timesteps=0"], "total_timesteps=0 must be a positive integer"),
        (["--set", "gamma=1.01"], "gamma=1.01 must lie in [0.0, 1.0]"),
        (["--set", "gamma=-0.5"], "gamma=-0.5"),
        (["--set", "gae_lambda=2"], "gae_lambda=2.0 must lie in [0.0, 1.0]"),
        (["--set", "num_envs=8", "n_steps=8", "total_timesteps=63"], "smaller than one rollout"),
        (["--set", "torso=cnn"], "torso='cnn' needs image observations"),
        (["--set", "lrr=1e-3"], "'lrr' is not a Config field; did you mean 'lr'"),
        (["--set", "num_envs=many"], "num_envs='many': not a valid int"),
        (["--set", "hidden_sizes=a,b"], "hidden_sizes='a,b': not a valid"),
        (["--set", "anneal_lr=perhaps"], "anneal_lr='perhaps': not a valid true or false"),
        (["--num-seeds", "0"], "--num-seeds=0 must be a positive integer"),
    ],
)
def test_bad_input_is_rejected_before_any_compile(argv, message, tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(chunked, "train_run", no_training)
    with _CompileCounter() as compiles:
        code = main(["train", "--no-cache", "--out", str(tmp_path / "run"), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("a3c-jax: error: ") and message in err, err
    assert compiles.count == 0
    assert not (tmp_path / "run").exists()


def test_config_file_errors_name_the_file_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gama: 0.9\n")
    assert main(["train", "--config", str(bad), "--dry-run"]) == 2
    assert "'gama' is not a Config field; did you mean 'gamma'" in capsys.readouterr().err
    bad.write_text("lr: [unclosed\n")
    assert main(["train", "--config", str(bad), "--dry-run"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.json"), "--dry-run"]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_action_space_mismatch_is_rejected():
    # Settings that only make sense for one kind of action space name the field and the env.
    from a3c_jax.config import ACTION_SPACE_FIELDS

    for name, (kind, value) in ACTION_SPACE_FIELDS.items():
        env = "CartPole-v1" if kind == "continuous" else "Pendulum-v1"
        with pytest.raises(ConfigError, match=f"{name}=.*only applies to {kind} actions"):
            Config(env_name=env, **{name: value})


# --------------------------------------------------------------------------- determinism


def test_same_config_and_seed_give_bitwise_identical_runs(small_result):
    first = small_result
    second = a3c_jax.jit_train(SMALL)(jax.random.PRNGKey(0))  # traced and compiled again
    chex.assert_trees_all_equal(first.params, second.params)
    chex.assert_trees_all_equal(first.metrics, second.metrics)
    chex.assert_trees_all_equal(first.runner_state, second.runner_state)


def test_vmap_over_seeds_equals_each_seed_alone(key):
    keys = jax.random.split(key, 3)
    many = a3c_jax.jit_train(SMALL, num_seeds=3)(keys)
    for i in range(3):
        one = train_small(keys[i])
        seed_i = jax.tree.map(lambda x, i=i: x[i], many)
        chex.assert_trees_all_close(seed_i.params, one.params, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(seed_i.metrics.env_steps, one.metrics.env_steps)
        np.testing.assert_allclose(seed_i.metrics.total_loss, one.metrics.total_loss, rtol=1e-3)


# --------------------------------------------------------------------------- divergence guard


def _poisoned(bad_update: int):
    """The a2c builder, except that update `bad_update` leaves nan parameters behind."""
    real = ALGORITHM_BUILDERS["a2c"]

    def build(config, spec, networks, optimizer):
        algorithm = real(config, spec, networks, optimizer)

        def update(train_state, env, algo_state, key):
            train_state, env, algo_state, out = algorithm.update(train_state, env, algo_state, key)
            poison = train_state.update_step == bad_update
            params = jax.tree.map(lambda p: jnp.where(poison, jnp.nan, p), train_state.params)
            return train_state._replace(params=params), env, algo_state, out

        return algorithm._replace(update=update)

    return build


def test_divergence_bits():
    metrics = a3c_jax.UpdateMetrics(*[jnp.float32(1.0)] * len(a3c_jax.UpdateMetrics._fields))
    params = {"w": jnp.ones(3)}
    assert int(divergence(metrics, params)) == 0
    assert int(divergence(metrics._replace(critic_loss=jnp.float32(jnp.inf)), params)) == (
        DIVERGED_LOSS
    )
    assert int(divergence(metrics._replace(grad_norm=jnp.float32(jnp.nan)), params)) == (
        DIVERGED_GRADIENT
    )
    assert int(divergence(metrics, {"w": jnp.array([1.0, jnp.nan, 1.0])})) == DIVERGED_PARAMS


def test_guard_stops_at_the_first_bad_update(small_result, monkeypatch):
    monkeypatch.setitem(ALGORITHM_BUILDERS, "a2c", _poisoned(7))
    trainer = a3c_jax.make_trainer(SMALL)
    run = jax.jit(trainer.run, static_argnums=1)
    start = trainer.init(jax.random.PRNGKey(0))
    runner, metrics = run(start, 10, SMALL.num_updates)
    # Six good updates; the seventh is flagged (its result is kept, nan parameters and all).
    assert int(runner.updates) == 6 and int(runner.diverged) == DIVERGED_PARAMS
    assert int(runner.train_state.env_steps) == 7 * SMALL.batch_size
    # The first 7 rows are the clean run's (the poison comes after the loss); no update runs
    # after the bad one (its row is repeated with no episodes), and running on changes nothing.
    clean = small_result.metrics
    np.testing.assert_allclose(metrics.total_loss[:7], clean.total_loss[:7], rtol=1e-5)
    np.testing.assert_array_equal(metrics.env_steps[:7], clean.env_steps[:7])
    np.testing.assert_array_equal(metrics.total_loss[7:], metrics.total_loss[6])
    np.testing.assert_array_equal(metrics.env_steps[7:], 7 * SMALL.batch_size)
    np.testing.assert_array_equal(metrics.episodes[7:], 0)
    later, _ = run(runner, 10, SMALL.num_updates)
    chex.assert_trees_all_equal(later, runner)
    with pytest.raises(DivergenceError, match=r"update 7 produced a non-finite parameters"):
        a3c_jax.check_finite(runner)
    # Replaying from the start up to the last good update gives the state before the bad one.
    good, replayed = run(start, 10, 6)
    assert int(good.updates) == 6 and int(good.diverged) == 0
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(good.train_state.params))
    np.testing.assert_array_equal(replayed.total_loss[:6], metrics.total_loss[:6])


def test_diverged_run_stops_with_a_clear_error_and_a_loadable_checkpoint(
    tmp_path, monkeypatch, capsys
):
    config = SMALL.replace(vf_coef=0.25)  # a config of its own: no compiled-chunk reuse
    monkeypatch.setitem(ALGORITHM_BUILDERS, "a2c", _poisoned(23))
    with pytest.raises(DivergenceError) as info:
        chunked.train_run(
            config,
            tmp_path / "run",
            chunk_updates=5,
            checkpoint_every=5,
            progress=False,
            log=_quiet,
        )
    error = info.value
    assert error.update == 23 and error.quantities == ("parameters",)
    assert "update 23 produced a non-finite parameters" in str(error)
    assert "last good state (update 22) is saved in" in str(error)
    assert "update_000000022.ckpt" in str(error)
    saved = a3c_jax.load(tmp_path / "run")
    assert saved.meta["update"] == 22 and saved.meta["status"] == "diverged"
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(saved.params))
    # The saved state is, bitwise, a clean run's after 22 updates: chunks of 5 through the same
    # update (its poison lies beyond), the last one stopped at 22.
    trainer = a3c_jax.make_trainer(config)
    run = jax.jit(trainer.run, static_argnums=1, compiler_options=compiler_options(config))
    clean = trainer.init(jax.random.PRNGKey(0))
    for until in (5, 10, 15, 20, 22):
        clean, _ = run(clean, 5, until)
    assert int(clean.updates) == 22 and int(clean.diverged) == 0
    flat_saved, flat_clean = flatten_state(saved.runner_state), flatten_state(clean)
    assert flat_saved.keys() == flat_clean.keys()
    for path in flat_saved:
        if path != ".diverged":  # the saved state keeps the flag: the run refuses to resume
            np.testing.assert_array_equal(flat_saved[path], flat_clean[path], err_msg=path)
    # An earlier periodic checkpoint is intact too.
    assert checkpoint_file.read_checkpoint(tmp_path / "run/checkpoints/update_000000020.ckpt")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"
    assert chunked.read_metrics(tmp_path / "run")["update"].max() == 22
    # A diverged run stays stopped: resuming it says so, through the CLI with exit code 3.
    code = main(["train", "--no-cache", "--resume", str(tmp_path / "run"), "--episodes", "0"])
    assert code == 3
    assert "training diverged: update 23" in capsys.readouterr().err


def test_a_diverging_cli_run_exits_with_code_3(tmp_path, capsys):
    """`a3c-jax train` itself (not only `--resume`) stops a diverging run with exit code 3, the
    message and the last good state on disk."""
    out = tmp_path / "diverging"
    argv = ["train", "--no-cache", "--no-progress", "--out", str(out), "--episodes", "0"]
    code = main(
        [*argv, "--set", "num_envs=4", "n_steps=4", "total_timesteps=640", "reward_scale=1e30"]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "training diverged: update 1 produced a non-finite loss" in err, err
    assert "Traceback" not in err
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "diverged" and saved.meta["update"] == 0


def test_a_real_blow_up_is_caught(key):
    # Rewards scaled to 1e30 overflow the critic's squared error in float32 at once.
    config = SMALL.replace(reward_scale=1e30)
    result = jax.jit(a3c_jax.make_train(config))(key)
    with pytest.raises(DivergenceError, match="update 1 produced a non-finite loss"):
        a3c_jax.check_finite(result)
    assert int(result.runner_state.updates) == 0
    assert int(result.runner_state.train_state.env_steps) == SMALL.batch_size  # nothing after
    assert not np.any(np.isfinite(result.metrics.total_loss))


# --------------------------------------------------------------------------- files


def test_run_folder_is_never_overwritten_without_overwrite(tmp_path, capsys, small_result):
    out = tmp_path / "run"
    saved = a3c_jax.save(out, small_result, SMALL)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", "--no-cache", "--out", str(out), "--set", "num_envs=4"]) == 2
    assert "already holds a run; pass --overwrite" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert saved.exists()
    # Not even --overwrite empties a folder that holds something else than a run.
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    assert main(["train", "--out", str(other), "--overwrite", "--dry-run"]) == 0  # no write
    with pytest.raises(a3c_jax.RunDirError, match="holds no a3c_jax run"):
        chunked.prepare_new_run_dir(other, overwrite=True)
    assert (other / "cat.jpg").read_bytes() == b"meow"


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "update_000000001.ckpt"
    state = {"w": np.arange(4.0)}
    checkpoint_file.save_checkpoint(path, state, SMALL, {"update": 1})
    good = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_file.save_checkpoint(path, {"w": np.zeros(4)}, SMALL, {"update": 1})
    assert path.read_bytes() == good  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    content = checkpoint_file.read_checkpoint(path)
    np.testing.assert_array_equal(content.arrays["['w']"], np.arange(4.0))


def test_corrupt_or_truncated_checkpoints_give_clear_errors(tmp_path, capsys, small_result):
    out = tmp_path / "run"
    path = a3c_jax.save(out, small_result, SMALL)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(a3c_jax.CheckpointError, match="corrupt or truncated"):
        a3c_jax.load(out)
    assert main(["eval", str(out), "--episodes", "1"]) == 1
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and "Traceback" not in err
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(a3c_jax.CheckpointError, match="checksum mismatch"):
        a3c_jax.load(out)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(a3c_jax.CheckpointError, match="not an a3c_jax checkpoint"):
        a3c_jax.load(out)
    path.unlink()
    with pytest.raises(a3c_jax.RunDirError, match="holds no checkpoint"):
        a3c_jax.load(out)


def test_loading_with_another_config_names_the_fields(tmp_path, capsys, small_result):
    out = tmp_path / "run"
    a3c_jax.save(out, small_result, SMALL)
    with pytest.raises(a3c_jax.ConfigMismatchError) as info:
        a3c_jax.load(out, config=SMALL.replace(lr=1e-4, gamma=0.9))
    message = str(info.value)
    assert "gamma: saved 0.99, requested 0.9" in message and "lr: saved 0.003" in message
    assert "num_envs" not in message
    assert main(["train", "--resume", str(out), "--set", "ent_coef=0.5"]) == 2
    assert "ent_coef: saved 0.01, requested 0.5" in capsys.readouterr().err


# --------------------------------------------------------------------------- properties


def _returns_reference(r, d, bootstrap):
    g, out = bootstrap, []
    for t in reversed(range(len(r))):
        g = r[t] + d[t] * g
        out.append(g)
    return out[::-1]


def _gae_reference(r, v, d, bootstrap, lambda_):
    values = [*v, bootstrap]
    a, out = 0.0, []
    for t in reversed(range(len(r))):
        delta = r[t] + d[t] * values[t + 1] - values[t]
        a = delta + d[t] * lambda_ * a
        out.append(a)
    return out[::-1]


# Jitted once per shape (eager `lax.scan` would compile again on every call).
discounted_returns = jax.jit(returns.discounted_returns)
gae_advantages = jax.jit(returns.gae_advantages)
truncate_episodes = jax.jit(returns.truncate_episodes)


@st.composite
def trajectories(draw):
    length = draw(st.sampled_from([1, 2, 5, 12]))
    batch = draw(st.sampled_from([1, 3]))
    floats = st.floats(-10, 10, width=32)
    shape = (length, batch)
    rewards = np.array(draw(st.lists(floats, min_size=length * batch, max_size=length * batch)))
    values = np.array(draw(st.lists(floats, min_size=length * batch, max_size=length * batch)))
    done = np.array(draw(st.lists(st.booleans(), min_size=length * batch, max_size=length * batch)))
    bootstrap = np.array(draw(st.lists(floats, min_size=batch, max_size=batch)))
    gamma = draw(st.floats(0.0, 1.0))
    lambda_ = draw(st.floats(0.0, 1.0))
    discounts = np.where(done, 0.0, gamma)
    return (
        rewards.reshape(shape).astype(np.float32),
        values.reshape(shape).astype(np.float32),
        discounts.reshape(shape).astype(np.float32),
        bootstrap.astype(np.float32),
        np.float32(lambda_),
    )


@settings(max_examples=40, deadline=None)
@given(trajectories())
def test_returns_and_gae_match_a_plain_python_reference(data):
    rewards, values, discounts, bootstrap, lambda_ = data
    g = np.asarray(discounted_returns(rewards, discounts, bootstrap))
    a = np.asarray(gae_advantages(rewards, values, discounts, bootstrap, lambda_))
    for b in range(rewards.shape[1]):
        column = (rewards[:, b], discounts[:, b], bootstrap[b])
        np.testing.assert_allclose(g[:, b], _returns_reference(*column), rtol=1e-4, atol=1e-3)
        expected = _gae_reference(
            rewards[:, b], values[:, b], discounts[:, b], bootstrap[b], lambda_
        )
        np.testing.assert_allclose(a[:, b], expected, rtol=1e-4, atol=1e-3)
    # λ = 1 is the n-step advantage: discounted returns minus values.
    ones = np.asarray(gae_advantages(rewards, values, discounts, bootstrap, 1.0))
    np.testing.assert_allclose(ones, g - values, rtol=1e-4, atol=1e-3)


@st.composite
def episode_ends(draw):
    """Drawn `[T, B]` rewards, next values, termination and truncation flags, and a discount."""
    length = draw(st.integers(1, 9))
    batch = draw(st.integers(1, 4))
    n = length * batch
    floats = st.floats(-100, 100, width=32)

    def array(elements, dtype):
        values = draw(st.lists(elements, min_size=n, max_size=n))
        return np.array(values, dtype).reshape(length, batch)

    return (
        array(floats, np.float32),
        array(st.booleans(), bool),
        array(st.booleans(), bool),
        array(floats, np.float32),
        draw(st.floats(0.0, 1.0)),
    )


@settings(max_examples=40, deadline=None)
@given(episode_ends())
def test_truncation_matches_a_plain_python_reference(data):
    rewards, terminated, truncated, next_values, gamma = data
    r, d = truncate_episodes(rewards, terminated, truncated, next_values, gamma)
    chex.assert_shape([r, d], rewards.shape)
    r, d = np.asarray(r), np.asarray(d)
    for t, b in np.ndindex(rewards.shape):
        bootstrap = truncated[t, b] and not terminated[t, b]
        expected_r = rewards[t, b] + (np.float32(gamma) * next_values[t, b] if bootstrap else 0.0)
        np.testing.assert_allclose(r[t, b], expected_r, rtol=1e-6, atol=1e-5)
        ended = terminated[t, b] or truncated[t, b]
        assert d[t, b] == pytest.approx(0.0 if ended else gamma)


BIG = float(np.float32(1e30))


@jax.jit
@jax.value_and_grad
def _categorical_loss(logits: jax.Array, advantage: jax.Array) -> jax.Array:
    """The actor-critic loss of taking each of the `n` actions once under `logits` `[n]`."""
    n = logits.shape[-1]
    pi = Categorical(jnp.broadcast_to(logits, (n, n)))
    total, _ = losses.actor_critic_loss(
        pi.log_prob(jnp.arange(n)),  # every action, the least likely one too
        pi.entropy(),
        jnp.zeros(n),
        jnp.full(n, advantage),
        jnp.ones(n),
        0.5,
        0.01,
    )
    return total


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-BIG, BIG, width=32), min_size=4, max_size=4),
    st.floats(-1e3, 1e3, width=32),
)
def test_losses_are_finite_on_extreme_logits(logits, advantage):
    """Logits as far apart as 2e30 (a probability of exp(-2e30) = 0) keep the loss and its
    gradient finite: log-softmax, and entropy terms where p = 0 contribute 0, not 0 * inf."""
    value, grad = _categorical_loss(jnp.asarray(logits, jnp.float32), jnp.float32(advantage))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@jax.jit
@functools.partial(jax.value_and_grad, argnums=(0, 1))
def _gaussian_loss(mean: jax.Array, log_std: jax.Array, action: jax.Array, advantage: jax.Array):
    """The actor-critic loss of `action` under a diagonal Gaussian `[1, 2]`."""
    pi = DiagGaussian(jnp.full((1, 2), mean), jnp.full((1, 2), log_std))
    total, _ = losses.actor_critic_loss(
        pi.log_prob(jnp.full((1, 2), action)),
        pi.entropy(),
        jnp.zeros(1),
        jnp.full(1, advantage),
        jnp.ones(1),
        0.5,
        0.01,
    )
    return total


@settings(max_examples=40, deadline=None)
@given(
    st.floats(-20, 20, width=32),
    st.floats(-1e3, 1e3, width=32),
    st.floats(-10, 10, width=32),
    st.floats(-1e3, 1e3, width=32),
)
def test_gaussian_losses_and_gradients_are_finite(log_std, action, mean, advantage):
    """Log-stds anywhere in [-20, 20] (the range `log_std_init` may take), actions far from the
    mean: the loss and its gradients in the mean and the log-std stay finite."""
    value, (grad_mean, grad_log_std) = _gaussian_loss(
        jnp.float32(mean), jnp.float32(log_std), jnp.float32(action), jnp.float32(advantage)
    )
    assert np.isfinite(value) and np.isfinite(grad_mean) and np.isfinite(grad_log_std)
