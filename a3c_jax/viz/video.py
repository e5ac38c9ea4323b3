"""Videos of one episode: played under `jit`, drawn with Pillow, saved as an animated GIF.

gymnax's own visualiser draws classic control through Gymnasium's pygame renderer (pygame is not
a dependency here) and MinAtar through seaborn, and replays states one matplotlib frame at a time.
These small Pillow renderers cover the classic-control environments from their states
(CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCar-v0 and MountainCarContinuous-v0) and every
environment whose observation is a grid (`[H, W]` such as Catch-bsuite, or `[H, W, C]` such as
the MinAtar games) from its observations; Brax environments (`"brax:<name>"`) from their
bodies' positions (`draw_brax`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import envs
from a3c_jax.algorithms import build
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.algorithms.rollout import (
    EpisodeState,
    episode_step,
    rollout_draws,
    start_episodes,
    with_initial_state,
)
from a3c_jax.config import Config
from a3c_jax.core.types import Params, PRNGKey
from a3c_jax.training.evaluation import acting_policy

WIDTH, HEIGHT = 360, 240
_PALETTE = [  # channel colours of grid observations (background black)
    (230, 97, 1),
    (94, 60, 153),
    (253, 184, 99),
    (178, 171, 210),
    (27, 158, 119),
    (217, 95, 2),
    (117, 112, 179),
    (231, 41, 138),
    (102, 166, 30),
    (230, 171, 2),
]


def play_recorded(
    config: Config, params: Params, key: PRNGKey, max_steps: int, greedy: bool = True
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Plays one episode (at most `max_steps` steps) under `jit`, stepping as every episode loop
    does (`rollout.episode_step`).

    Returns the environment states and observations before each action (leaves `[max_steps,
    ...]`), the rewards `[max_steps]` and the number of steps the episode took (the rest of the
    arrays belong to the next, auto-reset episode).
    """
    spec = build.env_spec(config, training=False)
    networks = make_networks(config, spec)
    policy_fn = acting_policy(networks, spec, greedy)

    @jax.jit
    def play(params: Params, key: PRNGKey) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
        reset_key, key = jax.random.split(key)
        carry = with_initial_state(networks, envs.reset(spec, reset_key, 1))

        def body(state: EpisodeState, keys: tuple) -> tuple[EpisodeState, tuple]:
            before = state.carry
            state, (transition, valid) = episode_step(spec, policy_fn, params, state, keys)
            return state, (before.env_state, before.obs[0], transition.reward[0], valid[0])

        keys = rollout_draws(spec, key, carry.env_id, max_steps)
        _, (states, obs, rewards, valid) = jax.lax.scan(body, start_episodes(carry), keys)
        return states, obs, rewards, jnp.sum(valid)

    states, obs, rewards, length = jax.device_get(play(params, key))
    states = jax.tree.map(lambda x: x[:, 0], states)  # drop the one-environment axis
    return states, np.asarray(obs), np.asarray(rewards), int(length)


def _canvas() -> tuple[Any, Any]:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    return image, ImageDraw.Draw(image)


def _to_pixels(x: float, y: float, x_range: tuple[float, float], y_range: tuple[float, float]):
    """World `(x, y)` (y up) to pixel coordinates in the canvas (y down)."""
    px = (x - x_range[0]) / (x_range[1] - x_range[0]) * WIDTH
    py = HEIGHT - (y - y_range[0]) / (y_range[1] - y_range[0]) * HEIGHT
    return px, py


def draw_cartpole(state: Any, params: Any) -> Any:
    image, draw = _canvas()
    half = float(params.x_threshold) * 1.2
    xr, yr = (-half, half), (-half * HEIGHT / WIDTH + 0.8, half * HEIGHT / WIDTH + 0.8)
    x, theta = float(state.x), float(state.theta)
    pole = 2 * float(params.length)
    draw.line([_to_pixels(-half, 0, xr, yr), _to_pixels(half, 0, xr, yr)], fill=(0, 0, 0))
    left, top = _to_pixels(x - 0.25, 0.15, xr, yr)
    right, bottom = _to_pixels(x + 0.25, -0.0, xr, yr)
    draw.rectangle([left, top, right, bottom], fill=(40, 40, 40))
    base = _to_pixels(x, 0.15, xr, yr)
    tip = _to_pixels(x + pole * math.sin(theta), 0.15 + pole * math.cos(theta), xr, yr)
    draw.line([base, tip], fill=(202, 152, 101), width=8)
    return image


def draw_acrobot(state: Any, params: Any) -> Any:
    image, draw = _canvas()
    l1, l2 = float(params.link_length_1), float(params.link_length_2)
    bound = (l1 + l2) * 1.1
    xr, yr = (-bound * WIDTH / HEIGHT, bound * WIDTH / HEIGHT), (-bound, bound)
    t1, t2 = float(state.joint_angle1), float(state.joint_angle2)
    p1 = (l1 * math.sin(t1), -l1 * math.cos(t1))
    p2 = (p1[0] + l2 * math.sin(t1 + t2), p1[1] - l2 * math.cos(t1 + t2))
    draw.line([_to_pixels(-bound * 2, 1.0, xr, yr), _to_pixels(bound * 2, 1.0, xr, yr)], (0,) * 3)
    points = [_to_pixels(0, 0, xr, yr), _to_pixels(*p1, xr, yr), _to_pixels(*p2, xr, yr)]
    draw.line(points, fill=(0, 204, 204), width=8)
    for px, py in points[:2]:
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=(204, 204, 0))
    return image


def draw_pendulum(state: Any, params: Any) -> Any:
    image, draw = _canvas()
    del params
    xr, yr = (-1.2 * WIDTH / HEIGHT, 1.2 * WIDTH / HEIGHT), (-1.2, 1.2)
    theta = float(state.theta)
    tip = _to_pixels(-math.sin(theta), math.cos(theta), xr, yr)
    draw.line([_to_pixels(0, 0, xr, yr), tip], fill=(204, 77, 77), width=12)
    cx, cy = _to_pixels(0, 0, xr, yr)
    draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(0, 0, 0))
    return image


def draw_mountain_car(state: Any, params: Any) -> Any:
    image, draw = _canvas()
    low, high = float(params.min_position), float(params.max_position)
    xr, yr = (low, high), (0.0, 1.2)

    def height(x: float) -> float:
        return math.sin(3 * x) * 0.45 + 0.55

    xs = np.linspace(low, high, 100)
    draw.line([_to_pixels(x, height(x), xr, yr) for x in xs], fill=(0, 0, 0), width=2)
    goal = float(params.goal_position)
    gx, gy = _to_pixels(goal, height(goal), xr, yr)
    draw.line([(gx, gy), (gx, gy - 40)], fill=(0, 0, 0), width=2)
    draw.polygon([(gx, gy - 40), (gx + 18, gy - 34), (gx, gy - 28)], fill=(204, 204, 0))
    x = float(state.position)
    cx, cy = _to_pixels(x, height(x), xr, yr)
    draw.ellipse([cx - 10, cy - 18, cx + 10, cy + 2], fill=(60, 60, 200))
    return image


def draw_grid(obs: np.ndarray, cell: int = 24) -> Any:
    """A grid observation `[H, W]` (intensity) or `[H, W, C]` (one colour per channel)."""
    from PIL import Image

    obs = np.asarray(obs, np.float32)
    if obs.ndim == 2:
        pixels = np.repeat(((1.0 - np.clip(obs, 0, 1)) * 255)[..., None], 3, axis=-1)
    else:
        pixels = np.zeros((*obs.shape[:2], 3), np.float32)
        for c in range(obs.shape[-1]):
            colour = np.array(_PALETTE[c % len(_PALETTE)], np.float32)
            pixels = np.where(obs[..., c : c + 1] > 0, colour, pixels)
    pixels = np.kron(pixels, np.ones((cell, cell, 1))).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


STATE_RENDERERS: dict[str, Callable[[Any, Any], Any]] = {
    "CartPole-v1": draw_cartpole,
    "Acrobot-v1": draw_acrobot,
    "Pendulum-v1": draw_pendulum,
    "MountainCar-v0": draw_mountain_car,
    "MountainCarContinuous-v0": draw_mountain_car,
}


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`v` `[3]` rotated by the unit quaternion `q` `[4]` (w, x, y, z)."""
    w, u = q[0], q[1:]
    return v + 2.0 * w * np.cross(u, v) + 2.0 * np.cross(u, np.cross(u, v))


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The quaternion product `a b` (w, x, y, z)."""
    w = a[0] * b[0] - a[1:] @ b[1:]
    return np.concatenate([[w], a[0] * b[1:] + b[0] * a[1:] + np.cross(a[1:], b[1:])])


def _brax_geoms(sys: Any, state: Any) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Each drawn geometry of a Brax state as (type, world position, world rotation, size);
    planes (the ground) are left out."""
    body = np.asarray(sys.geom_bodyid)  # 0: the world; b > 0: link b - 1
    kind, size = np.asarray(sys.geom_type), np.asarray(sys.geom_size)
    local_pos, local_rot = np.asarray(sys.geom_pos), np.asarray(sys.geom_quat)
    x = state.inner.pipeline_state.x
    pos, rot = np.asarray(x.pos), np.asarray(x.rot)
    out = []
    for g in range(len(body)):
        if kind[g] == 0:  # planes: the ground line
            continue
        if body[g] == 0:
            p, q = local_pos[g], local_rot[g]
        else:
            link = body[g] - 1
            p = pos[link] + _rotate(rot[link], local_pos[g])
            q = _qmul(rot[link], local_rot[g])
        out.append((int(kind[g]), p, q, size[g]))
    return out


def _draw_geom(canvas: Any, geom: tuple, px: Callable, scale: float) -> None:
    """Draws one geometry of `_brax_geoms`; `px` maps a world point to pixels."""
    shape, p, q, s = geom
    if shape in (3, 5):  # capsule, cylinder: radius, half-length along the local z
        tip = _rotate(q, np.array([0.0, 0.0, s[1]]))
        width = max(2, int(2 * s[0] * scale))
        canvas.line([px(p - tip), px(p + tip)], fill=(204, 153, 102), width=width)
    elif shape == 6:  # box: the outline of its corners' projection
        signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)
        xs, ys = zip(*(px(p + _rotate(q, s * sign)) for sign in signs), strict=True)
        canvas.rectangle([min(xs), min(ys), max(xs), max(ys)], outline=(40, 40, 40))
    else:  # spheres and the rest: discs
        cx, cy = px(p)
        r = max(2.0, s[0] * scale)
        canvas.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(40, 40, 40))


def draw_brax(spec: envs.EnvSpec) -> Callable[[Any, Any], Any]:
    """A light renderer of any Brax environment (`a3c_jax.envs.brax_envs`), with no MuJoCo renderer:
    its capsules as thick segments, spheres as discs and boxes as their outline, seen from the
    side (x, z; from above, x, y, for reacher), the view following the first body and scaled
    to the first frame's extent."""
    sys = spec.env.env.sys
    axes = [0, 1] if spec.name == "brax:reacher" else [0, 2]
    view: dict[str, float] = {}

    def draw(state: Any, params: Any) -> Any:
        shapes = _brax_geoms(sys, state)
        centre_x = float(np.asarray(state.inner.pipeline_state.x.pos)[0, axes[0]])
        if not view:
            reach = [np.abs(p[axes] - [centre_x, 0.0]).max() + s[:2].max() for _, p, _, s in shapes]
            view["half"] = max(0.3, 1.2 * max(reach, default=1.0))
        half = view["half"]
        half_y = half * HEIGHT / WIDTH
        centre_y = 0.7 * half_y if axes[1] == 2 else 0.0
        xr, yr = (centre_x - half, centre_x + half), (centre_y - half_y, centre_y + half_y)
        image, canvas = _canvas()

        def px(point: np.ndarray) -> tuple[float, float]:
            return _to_pixels(float(point[axes[0]]), float(point[axes[1]]), xr, yr)

        if axes[1] == 2:
            canvas.line([_to_pixels(xr[0], 0, xr, yr), _to_pixels(xr[1], 0, xr, yr)], (0, 0, 0))
        for geom in shapes:
            _draw_geom(canvas, geom, px, WIDTH / (2 * half))
        return image

    return draw


def _state_renderer(config: Config, spec: envs.EnvSpec) -> Callable[[Any, Any], Any] | None:
    if envs.is_brax_env(config.env_name):
        return draw_brax(spec)
    return STATE_RENDERERS.get(config.env_name)


def can_render(env_name: str) -> bool:
    """Whether `record_episode` can draw `env_name`."""
    if env_name in STATE_RENDERERS or envs.is_brax_env(env_name):
        return True
    return len(envs.make_env(env_name).obs_shape) in (2, 3)


def write_new(path: Path, data: bytes) -> None:
    """Writes `data` to the new file `path`; `FileExistsError` if anything is there already (a
    file of the user's is never overwritten, nor a symlink followed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def record_episode(
    config: Config,
    params: Params,
    key: PRNGKey,
    path: str | os.PathLike[str],
    greedy: bool = True,
    max_steps: int = 1000,
    frame_ms: int | None = None,
) -> tuple[Path, float, int]:
    """Plays one episode with `params` and saves it as an animated GIF at `path`.

    Returns the path, the episode's undiscounted return and the number of frames.
    Raises `ValueError` for environments without a renderer.
    """
    if not str(path).lower().endswith(".gif"):
        raise ValueError(f"--video {path}: only .gif videos are written")
    if not can_render(config.env_name):
        raise ValueError(
            f"no renderer for {config.env_name}: videos are drawn for "
            f"{', '.join(STATE_RENDERERS)}, Brax environments and environments with grid "
            "observations"
        )
    spec = build.env_spec(config, training=False)
    states, obs, rewards, length = play_recorded(config, params, key, max_steps, greedy)
    draw = _state_renderer(config, spec)
    frames = []
    for t in range(length):
        if draw is not None:
            frames.append(draw(jax.tree.map(lambda x, t=t: x[t], states), spec.env_params))
        else:
            frames.append(draw_grid(obs[t]))
    if frame_ms is None:
        frame_ms = 40 if draw is not None else 100
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = io.BytesIO()
    frames[0].save(
        data,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=frame_ms,
        loop=0,
        optimize=False,
    )
    write_new(path, data.getvalue())
    return path, float(np.sum(rewards[:length])), len(frames)
