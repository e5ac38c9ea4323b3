"""Policy (actor) and value (critic) networks as flax modules behind pure `init` / `apply`.

The decks' design is the default: two separate networks, an actor giving a distribution over
actions and a critic giving a scalar state value. `shared_torso=True` puts both heads on one
torso instead. Torsos: an MLP for vector observations, a small CNN for image-like ones (MinAtar's
`[10, 10, C]`). Heads: categorical for discrete actions, diagonal Gaussian (state-independent
log-std, or from the actor's torso with `state_dependent_std`; squashed into the action bounds
with `action_bounding="tanh"`; gSDE's noise over the actor's features with `use_sde`) for
continuous ones. Orthogonal initialisation: `sqrt(2)` for
hidden layers, 0.01 for the policy (and log-std) head, 1 for the value head, applied to all
kernels at once by `Networks.init` (`orthogonal_init`; the flax module's own `init` leaves them
at zero).

Recurrent policies (`Config.recurrent`: "lstm" or "gru", flax's `OptimizedLSTMCell` and
`GRUCell` of `recurrent_size` units) put a core between the torso and the heads: one for the
actor and one for the critic (the decks' two networks), or one shared with `shared_torso`. The
hidden state (`types.CoreState`) is reset to its initial value, zeros, at the first step of
every episode (`reset_core`); `Networks.step` takes one step of `B` environments and
`Networks.unroll` a rollout `[T, B]` from its starting state, the same reset at each episode's
first step: the same function of the same inputs, so the loss re-runs exactly what was played.
Without a core both are the feed-forward actor-critic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp

from a3c_jax.config import torso_kind
from a3c_jax.core.distributions import (
    Categorical,
    DiagGaussian,
    Distribution,
    SquashedGaussian,
    StateDependentGaussian,
)
from a3c_jax.core.types import CoreState, Params, PRNGKey
from a3c_jax.envs import wrappers

if TYPE_CHECKING:
    from a3c_jax.config import Config
    from a3c_jax.envs import EnvSpec

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu}


def _orthonormal_columns(a: jax.Array) -> jax.Array:
    """Gram-Schmidt (classical, orthogonalised twice) on the columns of `a` `[n, m]`, `n >= m`.

    Equal in distribution to the sign-corrected QR of a Gaussian matrix, but built from matmuls
    alone: a vmapped LAPACK QR (flax's orthogonal initialiser, under `vmap` over seeds) can
    deadlock jaxlib's CPU thread pool on small machines. Column `j` depends on columns `<= j`
    only, so zero columns appended to `a` (padding) leave the others unchanged; they come out 0.
    """
    num_cols = a.shape[1]

    def body(j: jax.Array, q: jax.Array) -> jax.Array:
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        earlier = (jnp.arange(num_cols) < j).astype(a.dtype)
        for _ in range(2):
            v = v - q @ ((q.T @ v) * earlier)
        v = v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(a.dtype).tiny)
        return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=1)

    return jax.lax.fori_loop(0, num_cols, body, jnp.zeros_like(a))


def _tall_shape(shape: Sequence[int]) -> tuple[int, int]:
    """A kernel `[..., out]` as the matrix whose columns are orthonormalised: `[rows, out]`
    (rows = the product of the other axes) or its transpose, whichever is at least as tall as
    wide."""
    cols = shape[-1]
    rows = math.prod(shape) // cols
    return max(rows, cols), min(rows, cols)


def orthogonal_kernels(
    key: PRNGKey, shapes: Sequence[Sequence[int]], gains: Sequence[float]
) -> list[jax.Array]:
    """Orthogonal initialisation (Saxe et al., 2014) of several kernels at once: `gain * Q`
    for each kernel shape, `Q` with orthonormal columns (or rows, for kernels wider than tall),
    from a Gaussian matrix.

    One Gaussian draw `[L, n, m]`, zero-padded to each kernel's own `_tall_shape`, and one
    vmapped Gram-Schmidt: XLA compiles one random draw and one loop instead of one of each per
    layer (a random draw is a loop on the CPU backend; on this project's 2-core CPU, the
    default networks' initialisation then compiled in 0.5 s instead of 1.0 s).
    """
    tall = [_tall_shape(shape) for shape in shapes]
    n = max(rows for rows, _ in tall)
    m = max(cols for _, cols in tall)
    row, col = jnp.arange(n)[:, None], jnp.arange(m)[None, :]
    inside = jnp.stack([(row < rows) & (col < cols) for rows, cols in tall])
    gaussian = jnp.where(inside, jax.random.normal(key, (len(shapes), n, m)), 0.0)
    qs = jax.vmap(_orthonormal_columns)(gaussian)
    kernels = []
    for shape, (rows, cols), q, gain in zip(shapes, tall, qs, gains, strict=True):
        q = q[:rows, :cols]
        if math.prod(shape) // shape[-1] < shape[-1]:
            q = q.T
        kernels.append((gain * q).reshape(shape))
    return kernels


# Orthogonal gains: sqrt(2) for hidden layers, 0.01 for the policy head (a near-uniform first
# policy), 1 for the value head (Andrychowicz et al., 2021).
HIDDEN_GAIN = math.sqrt(2)
HEAD_GAINS = {"actor_head": 0.01, "critic_head": 1.0, "log_std_head": 0.01}
CORE_GAIN = 1.0  # the recurrent cores' kernels (gates of sigmoids and tanh)
CORE_NAMES = ("core", "actor_core", "critic_core")  # the cores' module names
CORES: dict[str, Callable[..., nn.Module]] = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
LOG_STD_RANGE = (-20.0, 2.0)  # state-dependent log-stds are clipped to this range


def orthogonal_init(params: Params, key: PRNGKey) -> Params:
    """`params` with every kernel replaced by an orthogonal one (`orthogonal_kernels`) at its
    layer's gain: `HEAD_GAINS` by the layer's name, `CORE_GAIN` inside a recurrent core, else
    `HIDDEN_GAIN`. Other leaves unchanged."""
    flat = flax.traverse_util.flatten_dict(params)
    paths = [path for path in flat if path[-1] == "kernel"]
    gains = [
        CORE_GAIN
        if any(name in CORE_NAMES for name in path)
        else HEAD_GAINS.get(path[-2], HIDDEN_GAIN)
        for path in paths
    ]
    kernels = orthogonal_kernels(key, [flat[path].shape for path in paths], gains)
    return flax.traverse_util.unflatten_dict({**flat, **dict(zip(paths, kernels, strict=True))})


def _dense(features: int) -> nn.Dense:
    # Kernels start at zero here; `Networks.init` makes them orthogonal (`orthogonal_init`).
    zeros = nn.initializers.zeros
    return nn.Dense(features, kernel_init=zeros, bias_init=zeros)


class MLPTorso(nn.Module):
    """Flattens the observation's `obs_ndim` axes, then dense layers: `[..., O...] -> [..., H]`."""

    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        batch_shape = obs.shape[: obs.ndim - self.obs_ndim]
        x = obs.reshape((*batch_shape, -1))
        for size in self.hidden_sizes:
            x = _ACTIVATIONS[self.activation](_dense(size)(x))
        return x


def patches_3x3(x: jax.Array) -> jax.Array:
    """The 3x3 neighbourhoods of a VALID convolution: `[..., H, W, C] -> [..., H-2, W-2, 9C]`."""
    h, w = x.shape[-3] - 2, x.shape[-2] - 2
    return jnp.concatenate(
        [x[..., i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
    )


class CNNTorso(nn.Module):
    """A 3x3 convolution (VALID, `channels` filters, ReLU), then dense layers:
    `[..., H, W, C] -> [..., hidden_sizes[-1]]`.

    The convolution is written as patches times a `[9C, channels]` kernel: the same function as
    `nn.Conv`, but its gradient is matmuls. On this project's 2-core CPU that made the whole
    MinAtar gradient step 10x faster (279 ms to 26 ms for 1,024 samples).
    """

    channels: int
    hidden_sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = nn.relu(_dense(self.channels)(patches_3x3(obs)))
        return MLPTorso(self.hidden_sizes, self.activation, obs_ndim=3)(x)


def zero_core(kind: str | None, size: int, batch: int) -> Any:
    """The initial hidden state of one core of `kind` for `batch` environments: an LSTM's
    `(c, h)`, a GRU's `h`, each `[batch, size]` zeros; `()` for no core."""
    if kind is None:
        return ()
    h = jnp.zeros((batch, size), jnp.float32)
    return (h, h) if kind == "lstm" else h


def reset_core(state: CoreState, first: jax.Array) -> CoreState:
    """The reset rule: `state` `[B, ...]` with the rows of environments at their episode's first
    step (`first` `[B]` bool) set back to the initial state (zeros), so nothing leaks across an
    episode boundary (after a termination or a truncation alike)."""
    return jax.tree.map(lambda x: jnp.where(first[:, None], jnp.zeros_like(x), x), state)


Features = tuple[jax.Array, jax.Array]  # (actor's, critic's) [..., H]


class ActorCritic(nn.Module):
    """Actor and critic; `__call__(obs) -> (distribution, value [...])` (feed-forward), or in
    pieces: `features` (torsos), `cores` (one recurrent step), `heads`."""

    torso_fn: Callable[[], nn.Module]
    discrete: bool
    num_actions: int
    shared_torso: bool
    log_std_init: float = 0.0  # Gaussian heads: the log-std starts here
    state_dependent_std: bool = False  # Gaussian heads: log-std from the torso's features
    # Gaussian heads: squash into these bounds ([d] each, `SquashedGaussian`); None: unbounded
    # (the environment clips the sampled actions).
    squash_low: tuple[float, ...] | None = None
    squash_high: tuple[float, ...] | None = None
    # Gaussian heads: gSDE's noise matrix over this many actor features (its log-std a
    # [features, d] parameter, `StateDependentGaussian`); 0: a plain diagonal Gaussian.
    sde_features: int = 0
    core: str | None = None  # "lstm" or "gru" after the torso(s); None: feed-forward
    core_size: int = 128
    recurrent_critic: bool = True  # False: only the actor has a core (a replayed critic)

    def setup(self) -> None:
        if self.shared_torso:
            self.torso = self.torso_fn()
        else:
            self.actor_torso = self.torso_fn()
            self.critic_torso = self.torso_fn()
        if self.core is not None and self.shared_torso:
            self.shared = CORES[self.core](self.core_size, name="core")
        elif self.core is not None:
            self.actor_core = CORES[self.core](self.core_size)
            if self.recurrent_critic:
                self.critic_core = CORES[self.core](self.core_size)
        self.actor_head = _dense(self.num_actions)
        if not self.discrete and self.state_dependent_std:
            # Starts near log_std_init everywhere: small kernel (HEAD_GAINS), constant bias.
            self.log_std_head = nn.Dense(
                self.num_actions,
                kernel_init=nn.initializers.zeros,
                bias_init=nn.initializers.constant(self.log_std_init),
            )
        elif not self.discrete:
            shape = (self.sde_features,) if self.sde_features else ()
            self.log_std = self.param(
                "log_std",
                nn.initializers.constant(self.log_std_init),
                (*shape, self.num_actions),
            )
        self.critic_head = _dense(1)

    def _distribution(self, features: jax.Array) -> Distribution:
        out = self.actor_head(features)
        if self.discrete:
            return Categorical(out)
        if self.sde_features:
            return StateDependentGaussian(out, jax.lax.stop_gradient(features), self.log_std)
        if self.state_dependent_std:
            log_std = jnp.clip(self.log_std_head(features), *LOG_STD_RANGE)
        else:
            log_std = jnp.broadcast_to(self.log_std, out.shape)
        if self.squash_low is None:
            return DiagGaussian(out, log_std)
        low, high = jnp.asarray(self.squash_low), jnp.asarray(self.squash_high)
        return SquashedGaussian(out, log_std, low, high)

    def policy(self, obs: jax.Array) -> Distribution:
        torso = self.torso if self.shared_torso else self.actor_torso
        return self._distribution(torso(obs))

    def value(self, obs: jax.Array) -> jax.Array:
        torso = self.torso if self.shared_torso else self.critic_torso
        return self.critic_head(torso(obs))[..., 0]

    def features(self, obs: jax.Array) -> Features:
        """The torsos' features of `obs` `[..., O...]`: (actor's, critic's), each `[..., H]`."""
        if self.shared_torso:
            features = self.torso(obs)
            return features, features
        return self.actor_torso(obs), self.critic_torso(obs)

    def cores(self, state: CoreState, features: Features) -> tuple[CoreState, Features]:
        """One step of the recurrent cores on features `[B, H]` from `state` `[B, ...]`
        (already reset where an episode starts); without a core, both pass through."""
        actor, critic = features
        if self.core is None:
            return state, features
        if self.shared_torso:
            carry, out = self.shared(state.actor, actor)
            return CoreState(carry, ()), (out, out)
        actor_carry, actor = self.actor_core(state.actor, actor)
        critic_carry = state.critic
        if self.recurrent_critic:
            critic_carry, critic = self.critic_core(state.critic, critic)
        return CoreState(actor_carry, critic_carry), (actor, critic)

    def heads(self, features: Features) -> tuple[Distribution, jax.Array]:
        """The policy and value `[...]` of (actor's, critic's) features `[..., H]`."""
        actor, critic = features
        return self._distribution(actor), self.critic_head(critic)[..., 0]

    def step(self, obs: jax.Array, state: CoreState) -> tuple[Distribution, jax.Array, CoreState]:
        """`features`, `cores`, `heads` on `obs` `[B, O...]` (used to create the parameters)."""
        state, features = self.cores(state, self.features(obs))
        pi, value = self.heads(features)
        return pi, value, state

    def __call__(self, obs: jax.Array) -> tuple[Distribution, jax.Array]:
        if self.shared_torso:
            features = self.torso(obs)
            return self._distribution(features), self.critic_head(features)[..., 0]
        return self.policy(obs), self.value(obs)


class Networks(NamedTuple):
    """Pure functions over the actor-critic's parameters. `obs` is `[..., O...]`.

    `apply`, `policy` and `value` are the feed-forward functions (a recurrent side raises: its
    output depends on a hidden state); `step` and `unroll` serve every network, recurrent or not.
    """

    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, jax.Array], tuple[Distribution, jax.Array]]  # -> (pi, v [...])
    policy: Callable[[Params, jax.Array], Distribution]
    value: Callable[[Params, jax.Array], jax.Array]  # -> [...]
    # (params, obs [B, O...], first [B] bool, state [B]) -> (pi [B], v [B], state [B])
    step: Callable[..., tuple[Distribution, jax.Array, CoreState]]
    # (params, obs [T, B, O...], first [T, B] bool, state [B]) -> (pi [T, B], v [T, B],
    # states [T, B]: the state after each step)
    unroll: Callable[..., tuple[Distribution, jax.Array, CoreState]]
    initial_state: Callable[[int], CoreState]  # batch -> zeros `[batch, ...]` (() leaves: none)
    recurrent_actor: bool = False
    recurrent_critic: bool = False


# Convolutions (filters, kernel size, stride) of the Atari torsos, all VALID and ReLU.
NATURE_CNN_LAYERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # Mnih et al. 2015 (Nature DQN)
A3C_CNN_LAYERS = ((16, 8, 4), (32, 4, 2))  # Mnih et al. 2013: the A3C paper's network


class StridedCNNTorso(nn.Module):
    """Strided convolutions (`layers`: filters, kernel size, stride; VALID, ReLU), then dense
    layers: `[..., H, W, C] -> [..., hidden_sizes[-1]]`, on frames scaled to [0, 1] (as the host
    environments prepare Atari's).

    `NATURE_CNN_LAYERS` is the Nature DQN torso (Mnih et al., 2015): for 84x84x4 frames with
    `hidden_sizes=(512,)`, 1.7M parameters. `A3C_CNN_LAYERS` with `hidden_sizes=(256,)` and
    ReLU is the network of the A3C paper (Mnih et al., 2016, after Mnih et al., 2013): 16 8x8
    filters stride 4, 32 4x4 filters stride 2, 256 units; 676,144 parameters for 84x84x4
    frames, about a third of the Nature torso's multiply-adds per frame."""

    layers: Sequence[tuple[int, int, int]]
    hidden_sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        zeros = nn.initializers.zeros  # orthogonal in `Networks.init`, as every kernel
        x = obs
        for features, size, stride in self.layers:
            conv = nn.Conv(features, (size, size), (stride, stride), "VALID", kernel_init=zeros)
            x = nn.relu(conv(x))
        return MLPTorso(self.hidden_sizes, self.activation, obs_ndim=3)(x)


STRIDED_CNNS = {"nature_cnn": NATURE_CNN_LAYERS, "a3c_cnn": A3C_CNN_LAYERS}


def actor_critic_module(config: Config, spec: EnvSpec) -> ActorCritic:
    """The flax module of `config`'s actor-critic for the environment `spec`."""
    from a3c_jax.config import registry

    kind = torso_kind(config.torso, spec.obs_shape)

    def torso_fn() -> nn.Module:
        if kind in STRIDED_CNNS:
            return StridedCNNTorso(STRIDED_CNNS[kind], config.hidden_sizes, config.activation)
        if kind == "cnn":
            return CNNTorso(config.cnn_channels, config.hidden_sizes, config.activation)
        return MLPTorso(config.hidden_sizes, config.activation, len(spec.obs_shape))

    core = config.recurrent
    squash = not spec.discrete and config.action_bounding == "tanh"
    return ActorCritic(
        torso_fn,
        spec.discrete,
        spec.num_actions,
        config.shared_torso,
        config.log_std_init,
        state_dependent_std=not spec.discrete and config.state_dependent_std,
        squash_low=tuple(map(float, spec.action_low)) if squash else None,
        squash_high=tuple(map(float, spec.action_high)) if squash else None,
        sde_features=sde_features(config, spec),
        core=core,
        core_size=config.recurrent_size,
        recurrent_critic=core is not None
        and (config.shared_torso or registry.get(config.algo).recurrent_critic),
    )


def sde_features(config: Config, spec: EnvSpec) -> int:
    """How many features gSDE's noise matrix spans (`Config.use_sde`): the actor's last ones,
    the recurrent core's output or the torso's last layer; 0 without gSDE."""
    if spec.discrete or not config.use_sde:
        return 0
    return config.recurrent_size if config.recurrent is not None else config.hidden_sizes[-1]


def _initial_state_fn(module: ActorCritic) -> Callable[[int], CoreState]:
    """`initial_state(B)`: the module's zero hidden state for B environments."""

    def initial_state(batch: int) -> CoreState:
        core, size = module.core, module.core_size
        if core is None:
            return CoreState()
        if module.shared_torso:
            return CoreState(zero_core(core, size, batch))
        critic_core = core if module.recurrent_critic else None
        return CoreState(zero_core(core, size, batch), zero_core(critic_core, size, batch))

    return initial_state


def _prepared(config: Config, params: Params, obs: jax.Array) -> tuple[Params, jax.Array]:
    """Parameters exported with frozen observation statistics (`wrappers.export_params`)
    normalise raw observations first; the training loop's own parameters have none."""
    obs = wrappers.prepare_obs(params, obs, config.obs_clip)
    return {k: v for k, v in params.items() if k != wrappers.OBS_STATS}, obs


def _stateless_fn(
    config: Config, module: ActorCritic, method: Callable | None, recurrent: bool, name: str
) -> Callable:
    """`fn(params, obs)` applying `method` of a feed-forward network; an error for a
    recurrent one, whose outputs depend on a hidden state."""

    def fn(params: Params, obs: jax.Array):
        if recurrent:
            raise TypeError(
                f"networks.{name}: recurrent={module.core!r} makes it depend on a hidden state; "
                "use networks.step or networks.unroll"
            )
        params, obs = _prepared(config, params, obs)
        return module.apply(params, obs, method=method)

    return fn


def _unroll_fn(config: Config, module: ActorCritic) -> Callable:
    """`unroll(params, obs [T, B, ...], first [T, B], state) -> (pi, value [T, B], states)`:
    the hidden state after each step (`states`, leaves [T, B, H]); feed-forward networks
    return `state` unchanged."""

    def unroll(
        params: Params, obs: jax.Array, first: jax.Array, state: CoreState
    ) -> tuple[Distribution, jax.Array, CoreState]:
        params, obs = _prepared(config, params, obs)
        features = module.apply(params, obs, method=ActorCritic.features)  # [T, B, H]
        states = state
        if module.core is not None:

            def body(state: CoreState, inputs: tuple[Features, jax.Array]):
                features, first = inputs
                state, features = module.apply(
                    params, reset_core(state, first), features, method=ActorCritic.cores
                )
                return state, (features, state)

            _, (features, states) = jax.lax.scan(body, state, (features, first))
        pi, value = module.apply(params, features, method=ActorCritic.heads)
        return pi, value, states

    return unroll


def make_networks(config: Config, spec: EnvSpec) -> Networks:
    """Builds the actor-critic described by `config` for the environment `spec`."""
    module = actor_critic_module(config, spec)
    initial_state = _initial_state_fn(module)
    recurrent = module.core is not None

    def init(key: PRNGKey) -> Params:
        module_key, kernel_key = jax.random.split(key)
        if recurrent:
            dummy_obs = jnp.zeros((1, *spec.obs_shape), jnp.float32)
            variables = module.init(
                module_key, dummy_obs, initial_state(1), method=ActorCritic.step
            )
        else:
            variables = module.init(module_key, jnp.zeros(spec.obs_shape, jnp.float32))
        return orthogonal_init(variables, kernel_key)

    def step(
        params: Params, obs: jax.Array, first: jax.Array, state: CoreState
    ) -> tuple[Distribution, jax.Array, CoreState]:
        params, obs = _prepared(config, params, obs)
        features = module.apply(params, obs, method=ActorCritic.features)
        state, features = module.apply(
            params, reset_core(state, first), features, method=ActorCritic.cores
        )
        pi, value = module.apply(params, features, method=ActorCritic.heads)
        return pi, value, state

    return Networks(
        init=init,
        apply=_stateless_fn(config, module, None, recurrent, "apply"),
        policy=_stateless_fn(config, module, ActorCritic.policy, recurrent, "policy"),
        value=_stateless_fn(config, module, ActorCritic.value, module.recurrent_critic, "value"),
        step=step,
        unroll=_unroll_fn(config, module),
        initial_state=initial_state,
        recurrent_actor=recurrent,
        recurrent_critic=module.recurrent_critic,
    )
