"""Host environments (Gymnasium): spaces -> heads, the truncation contract of the host rollout,
one A3C worker replaying host A2C, sync and async vector environments alike, clear errors."""

import importlib.util

import chex
import jax
import numpy as np
import pytest

if importlib.util.find_spec("gymnasium") is None:
    pytest.skip(
        'Gymnasium is not installed (pip install "a3c_jax[gymnasium]")', allow_module_level=True
    )

import gymnasium
from gymnasium import spaces as gym_spaces

import a3c_jax
from a3c_jax import Config, ConfigError, envs
from a3c_jax.algorithms import actor_critic
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.core.distributions import Categorical, DiagGaussian
from a3c_jax.envs import gymnasium_envs
from a3c_jax.workers import host_rollout

TIME_LIMIT = 3


class CounterEnv(gymnasium.Env):
    """Observes `[t]` (steps taken in the episode), reward 1 per step. Reset with an odd seed,
    the episode terminates at step `TIME_LIMIT`; with an even one the registered time limit
    truncates it there."""

    def __init__(self, obs_space=None, action_space=None):
        self.observation_space = obs_space or gym_spaces.Box(0.0, 100.0, (1,), np.float32)
        self.action_space = action_space or gym_spaces.Discrete(2)
        self.t = 0
        self.terminal = False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.terminal = seed % 2 == 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.terminal and self.t >= TIME_LIMIT, False, {}

    def _obs(self):
        if isinstance(self.observation_space, gym_spaces.Box):
            return np.full(self.observation_space.shape, self.t, np.float32)
        return self.observation_space.sample()


def _register(env_id: str, **kwargs) -> str:
    if env_id not in gymnasium.envs.registry:
        gymnasium.register(
            env_id, entry_point=CounterEnv, max_episode_steps=TIME_LIMIT, kwargs=kwargs
        )
    return gymnasium_envs.PREFIX + env_id


COUNTER = _register("a3c_jax_test/Counter-v0")
IMAGE = _register(
    "a3c_jax_test/Image-v0", obs_space=gym_spaces.Box(0.0, 1.0, (6, 6, 2), np.float32)
)
ONE_HOT = _register("a3c_jax_test/DiscreteObs-v0", obs_space=gym_spaces.Discrete(5, start=1))
DICT_OBS = _register(
    "a3c_jax_test/DictObs-v0",
    obs_space=gym_spaces.Dict({"a": gym_spaces.Box(0.0, 1.0, (2,), np.float32)}),
)
MULTI_DISCRETE = _register(
    "a3c_jax_test/MultiDiscrete-v0", action_space=gym_spaces.MultiDiscrete([2, 3])
)


def _shapes(env_name: str):
    """The parameter and policy shapes of `env_name`'s networks (nothing runs)."""
    spec = envs.make_env(env_name)
    networks = make_networks(Config(env_name=env_name), spec)

    def init_and_act(key):
        params = networks.init(key)
        return params, networks.policy(params, jax.numpy.zeros((2, *spec.obs_shape)))

    return spec, *jax.eval_shape(init_and_act, jax.random.PRNGKey(0))


def test_spaces_map_to_heads():
    cartpole, _, pi = _shapes("gymnasium:CartPole-v1")
    assert (cartpole.obs_shape, cartpole.discrete, cartpole.num_actions) == ((4,), True, 2)
    assert cartpole.max_episode_steps == 500
    assert isinstance(pi, Categorical) and pi.logits.shape == (2, 2)
    pendulum, _, pi = _shapes("gymnasium:Pendulum-v1")
    assert (pendulum.obs_shape, pendulum.discrete, pendulum.action_shape) == ((3,), False, (1,))
    assert isinstance(pi, DiagGaussian) and pi.mean.shape == (2, 1)
    np.testing.assert_array_equal(pendulum.action_low, [-2.0])
    np.testing.assert_array_equal(pendulum.action_high, [2.0])
    # Image observations [H, W, C] take the CNN torso (a convolution, then its MLP).
    image, params, _ = _shapes(IMAGE)
    assert image.obs_shape == (6, 6, 2)
    assert "MLPTorso_0" in params["params"]["actor_torso"]
    _, params, _ = _shapes("gymnasium:CartPole-v1")
    assert "MLPTorso_0" not in params["params"]["actor_torso"]
    # Discrete observations: one-hot inputs of the MLP.
    assert envs.make_env(ONE_HOT).obs_shape == (5,)
    np.testing.assert_array_equal(
        gymnasium_envs.observe(gym_spaces.Discrete(5, start=1), np.array([1, 5])),
        [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]],
    )


def test_gaussian_actions_respect_the_bounds():
    config = Config(env_name="gymnasium:Pendulum-v1", log_std_init=3.0)
    spec = envs.make_env(config.env_name)
    networks = make_networks(config, spec)
    act = jax.jit(host_rollout.make_act(spec, networks))
    params = jax.jit(networks.init)(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 256)
    actions = np.asarray(act(params, np.zeros((256, 3), np.float32), keys))
    assert actions.min() >= -2.0 and actions.max() <= 2.0
    assert actions.min() == -2.0 and actions.max() == 2.0  # std e^3: some samples were clipped


@pytest.mark.parametrize(
    "env_name, settings",
    [
        ("gymnasium:CartPole-v1", {}),
        ("gymnasium:Pendulum-v1", {}),
        ("gymnasium:Pendulum-v1", {"action_bounding": "tanh"}),
    ],
)
def test_the_rollouts_noise_drawn_ahead_picks_the_keys_own_actions(env_name, settings):
    # A rollout's policy step acts on noise drawn ahead for all its steps (`action_noise`);
    # each step's actions must be those `make_act` samples from the keys the noise came from.
    config = Config(env_name=env_name, **settings)
    spec = envs.make_env(env_name)
    networks = make_networks(config, spec)
    params = jax.jit(networks.init)(jax.random.PRNGKey(0))
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, *spec.obs_shape)))
    policy = jax.eval_shape(networks.policy, params, obs[:1])
    noise = host_rollout.action_noise(policy, jax.random.PRNGKey(2), 6, 4)
    keys = host_rollout.action_keys(jax.random.PRNGKey(2), 6, 4)
    step_act = jax.jit(host_rollout.make_step_act(spec, networks))
    act = jax.jit(host_rollout.make_act(spec, networks))
    actions = [np.asarray(step_act(params, obs, noise, t)) for t in range(4)]
    for t in range(4):  # discrete: equal; continuous: to float rounding (programs fuse apart)
        np.testing.assert_allclose(actions[t], act(params, obs, keys[t]), rtol=1e-6, atol=1e-6)
    assert len({a.tobytes() for a in actions}) == 4  # the steps' noises differ


def test_truncation_bootstraps_and_termination_does_not():
    # Environment 0 (seed 0) is truncated by the time limit at its 3rd step, environment 1
    # (seed 1) terminates there.
    config = Config(env_name=COUNTER, num_envs=2, n_steps=5, gae_lambda=1.0)
    spec = envs.make_env(COUNTER)
    networks = make_networks(config, spec)
    params = jax.jit(networks.init)(jax.random.PRNGKey(0))
    act = jax.jit(host_rollout.make_step_act(spec, networks))
    policy = networks.policy(params, np.zeros((1, *spec.obs_shape), np.float32))
    noise = host_rollout.action_noise(policy, jax.random.PRNGKey(2), 2, 5)
    host_envs = host_rollout.HostEnvs(spec, 2)
    try:
        carry = host_rollout.HostCarry(
            host_envs.reset(seed=0), np.zeros(2, np.float32), np.zeros(2, np.int32)
        )
        _, traj = host_rollout.rollout(host_envs, act, params, carry, noise)
    finally:
        host_envs.close()
    np.testing.assert_array_equal(traj.truncated.T, [[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(traj.terminated.T, [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
    # Where an episode ended, next_obs is its final observation [3], the next obs the reset's
    # [0] (Gymnasium's SAME_STEP autoreset).
    np.testing.assert_array_equal(traj.next_obs[..., 0].T, [[1, 2, 3, 1, 2]] * 2)
    np.testing.assert_array_equal(traj.obs[..., 0].T, [[0, 1, 2, 0, 1]] * 2)
    np.testing.assert_array_equal(traj.episode_length[2], [3, 3])
    np.testing.assert_array_equal(traj.episode_return[2], [3.0, 3.0])

    next_values = actor_critic.bootstrap_values(spec, networks, params, traj)
    values = networks.value(params, traj.obs)
    _, targets = actor_critic.advantages_and_targets(traj, values, next_values, config)
    targets = np.asarray(targets)
    v_final = float(networks.value(params, np.array([3.0], np.float32)))
    assert abs(v_final) > 1e-3  # a bootstrap that could be told from zero
    np.testing.assert_allclose(targets[2, 0], 1.0 + config.gamma * v_final, rtol=1e-5)
    np.testing.assert_allclose(targets[2, 1], 1.0, rtol=1e-6)
    # Earlier steps of each episode carry their last step's target back.
    np.testing.assert_allclose(targets[1], 1.0 + config.gamma * targets[2], rtol=1e-5)


def test_one_a3c_worker_replays_host_a2c(key):
    config = Config(
        env_name="gymnasium:CartPole-v1",
        algo="a3c",
        num_workers=1,
        num_envs=1,
        n_steps=5,
        total_timesteps=5 * 40,
    )
    a3c = a3c_jax.train_async(config, key)
    a2c = a3c_jax.train_host(config.replace(algo="a2c"), key)
    chex.assert_trees_all_close(a3c.params, a2c.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(a3c.opt_state, a2c.opt_state, rtol=1e-5, atol=1e-7)
    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(
            getattr(a3c.metrics, name), getattr(a2c.metrics, name), rtol=1e-4, err_msg=name
        )
    for name in ("env_steps", "episode_return", "episodes", "learning_rate"):
        np.testing.assert_allclose(
            getattr(a3c.metrics, name), getattr(a2c.metrics, name), rtol=1e-6, err_msg=name
        )
    assert a2c.num_updates == a3c.num_updates == 40
    assert int(a2c.train_state.env_steps) == 200
    assert np.nansum(a2c.metrics.episodes) >= 1  # episodes ended (and were counted) on the way


def test_async_vector_env_plays_as_sync(key):
    config = Config(
        env_name="gymnasium:CartPole-v1", num_envs=2, n_steps=8, total_timesteps=2 * 8 * 6
    )
    sync = a3c_jax.train_host(config, key)
    parallel = a3c_jax.train_host(config.replace(vector_env="async"), key)
    chex.assert_trees_all_close(sync.params, parallel.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(sync.metrics.episodes, parallel.metrics.episodes)
    # A callback that returns True stops the run after that update.
    stopped = a3c_jax.train_host(config, key, callback=lambda record: record.update == 2)
    assert stopped.num_updates == 3 and int(stopped.train_state.update_step) == 3
    assert not stopped.interrupted


def test_several_host_workers_apply_their_gradients(key):
    config = Config(
        env_name="gymnasium:CartPole-v1", algo="a3c", num_workers=2, total_timesteps=5 * 60
    )
    result = a3c_jax.train_async(config, key)
    assert result.num_updates == 60 == int(result.train_state.update_step)
    assert set(result.async_metrics.worker) == {0, 1}
    chex.assert_tree_all_finite(result.params)
    returns = a3c_jax.evaluate(config, result.params, key, num_episodes=3)
    assert returns.shape == (3,) and np.all(returns >= 1)
    # A callback that returns True stops every worker after its current update.
    stopped = a3c_jax.train_async(config, key, callback=lambda record: record.update >= 9)
    assert 10 <= stopped.num_updates <= 11 and not stopped.interrupted


def test_host_config_errors_before_compiling(key, monkeypatch):
    with pytest.raises(
        ConfigError, match=r"'CartPol-v1' is not a registered Gymnasium.*CartPole-v1"
    ):
        Config(env_name="gymnasium:CartPol-v1")
    with pytest.raises(ConfigError, match="observation space Dict"):
        Config(env_name=DICT_OBS)
    with pytest.raises(ConfigError, match="action space MultiDiscrete"):
        Config(env_name=MULTI_DISCRETE)
    with pytest.raises(ConfigError, match="vector_env='async' only applies to host"):
        Config(vector_env="async")
    with pytest.raises(ConfigError, match="vector_env='async' only applies to host"):
        Config(env_name="gymnasium:CartPole-v1", algo="a3c", vector_env="async")
    with pytest.raises(ConfigError, match="train_host is for 'gymnasium:<id>'"):
        a3c_jax.train_host(Config(), key)
    with pytest.raises(ConfigError, match="algo='da2c' does not train on host"):
        a3c_jax.train_host(Config(env_name="gymnasium:CartPole-v1", algo="da2c"), key)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gymnasium" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r'pip install "a3c_jax\[gymnasium\]"'):
        Config(env_name="gymnasium:Acrobot-v1")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ale_py" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r'pip install "a3c_jax\[atari\]"'):
        Config(env_name="gymnasium:ALE/Breakout-v5")


def test_host_a3c_trains_in_a_run_folder_resumes_and_evaluates(tmp_path, capsys):
    """A3C on Gymnasium's CartPole-v1 through the command line: a run folder with metrics and
    checkpoints, stopped and resumed to its end (the store goes on; fresh environments), and
    `a3c-jax eval` of it."""
    from a3c_jax.cli.main import main
    from a3c_jax.runs import chunked

    out = tmp_path / "run"
    argv = ["train", "--no-cache", "--no-progress", "--episodes", "2", "--chunk-updates", "10"]
    fields = ["--env", "gymnasium:CartPole-v1", "--algo", "a3c"]
    fields += ["--set", "num_workers=2", "total_timesteps=800"]  # 160 updates of 5 steps
    assert main([*argv, *fields, "--out", str(out), "--stop-after", "30"]) == 0
    assert "stopped at update" in capsys.readouterr().out
    stopped = a3c_jax.load(out)
    assert stopped.meta["trainer"] == "async" and 30 <= stopped.meta["update"] < 160
    assert main([*argv, "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finished at update 160 of 160" in printed and "greedy evaluation over 2" in printed
    saved = a3c_jax.load(out)
    assert saved.config.env_name == "gymnasium:CartPole-v1" and saved.meta["env_steps"] == 800
    metrics = chunked.read_metrics(out)
    assert np.all(np.diff(metrics["update"]) > 0) and metrics["update"][-1] == 160
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert "greedy over 2 episodes" in capsys.readouterr().out
    assert main(["train", "--dry-run", "--env", "gymnasium:CartPole-v1", "--algo", "a2c"]) == 0


def test_host_a2c_trains_in_a_run_folder_resumes_and_stops_on_divergence(tmp_path, capsys):
    """The synchronous host learner through the command line: a run folder stopped and resumed
    to its end (the parameters, optimiser state and counters go on; fresh environments), whose
    metrics and checkpoint `load` and `a3c-jax eval` read; a run whose first update is not
    finite keeps the initial state and exits with code 3."""
    from a3c_jax.cli.main import main
    from a3c_jax.runs import chunked

    out = tmp_path / "run"
    argv = ["train", "--no-cache", "--no-progress", "--episodes", "2", "--chunk-updates", "10"]
    fields = ["--env", "gymnasium:CartPole-v1", "--algo", "a2c"]
    fields += ["--set", "num_envs=4", "n_steps=5", "total_timesteps=1200"]  # 60 updates
    assert main([*argv, *fields, "--out", str(out), "--stop-after", "20"]) == 0
    assert "stopped at update 20 of 60" in capsys.readouterr().out
    stopped = a3c_jax.load(out)
    assert stopped.meta["update"] == 20 and stopped.meta["env_steps"] == 400
    assert main([*argv, "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finished at update 60 of 60" in printed and "4 sync environments" in printed
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "finished" and saved.meta["env_steps"] == 1200
    leaves = zip(jax.tree.leaves(stopped.params), jax.tree.leaves(saved.params), strict=True)
    assert not all(np.array_equal(a, b) for a, b in leaves)  # the resumed run trained on
    metrics = chunked.read_metrics(out)
    assert list(metrics["update"]) == list(range(10, 70, 10))
    assert np.all(np.diff(metrics["env_steps"]) == 200)
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert "greedy over 2 episodes" in capsys.readouterr().out

    bad = tmp_path / "diverged"
    assert main([*argv, *fields, "lr=inf", "--out", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "training diverged" in err and "the last good state (update 0)" in err
    diverged = a3c_jax.load(bad)
    assert diverged.meta["status"] == "diverged" and diverged.meta["update"] == 0
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(diverged.params))


@pytest.mark.slow
def test_host_a2c_solves_gymnasium_cartpole():
    # Sync vector environment: the run is reproducible (Gymnasium seeded from the key). The
    # preset (gradient norm 1) at 80k steps: greedy 500 on seeds 0 and 1 (at 50k: 386 and 471).
    config = Config(env_name="gymnasium:CartPole-v1", algo="a2c", total_timesteps=80_000)
    result = a3c_jax.train_host(config, jax.random.PRNGKey(0))
    returns = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1000), 30)
    assert returns.mean() >= 475.0, returns.mean()


@pytest.mark.slow
def test_host_a3c_solves_gymnasium_cartpole():
    # Two worker threads, each with its own Gymnasium CartPole-v1; not reproducible (the order of
    # updates depends on the threads). At the gymnax test's 60k steps 1 of 3 runs fell short.
    config = Config(
        env_name="gymnasium:CartPole-v1", algo="a3c", num_workers=2, total_timesteps=100_000
    )
    result = a3c_jax.train_async(config, jax.random.PRNGKey(0))
    returns = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1000), 30)
    assert returns.mean() >= 475.0, (returns.mean(), result.staleness_mean)
