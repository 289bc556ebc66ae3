"""GIFs of adaptation: one episode per held-out task, before and after each inner step.

Frames come from gymnasium's own ``render_mode="rgb_array"`` (MuJoCo renders headless
through EGL: ``MUJOCO_GL=egl``, which ``rllib-maml evaluate --video`` sets when no display
is given, before MuJoCo is imported); Pillow, which
matplotlib already needs, writes the GIF. The policy acts with its mean action, so a
video shows what the weights do rather than the exploration noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import gymnasium as gym
import numpy as np
import torch

from ray.rllib.core.columns import Columns

from rllib_maml.core.distributions import MaskedDiagGaussian
from rllib_maml.tools.errors import UserError

#: Render size (pixels); MuJoCo's default of 480 makes GIFs of several MB.
FRAME_SIZE = 240
#: Keep every n-th frame (the GIF's frame rate follows from the env's dt).
FRAME_EVERY = 2


def make_render_env(config: Any) -> gym.Env:
    """The config's env, made through gymnasium with ``render_mode="rgb_array"``; a one-line
    :class:`UserError` if it cannot render here."""
    if not isinstance(config.env, str) or config.env not in gym.registry:
        raise UserError(f"--video needs a gymnasium-registered env id, got {config.env!r}")
    env, error = None, None
    for size in ({"width": FRAME_SIZE, "height": FRAME_SIZE}, {}):  # MuJoCo's size options, else none
        try:
            env = gym.make(config.env, render_mode="rgb_array", **size, **(config.env_config or {}))
            break
        except TypeError as err:
            error = err
        except Exception as err:
            raise UserError(f"--video: env {config.env!r} cannot be made for rendering ({type(err).__name__}: {err})") from None
    if env is None:
        raise UserError(f"--video: env {config.env!r} renders no rgb_array frames ({' '.join(str(error).split())[:200]})")
    try:
        env.reset(seed=0)
        frame = env.render()
    except Exception as err:
        env.close()
        first = " ".join(str(err).split()) or type(err).__name__
        raise UserError(
            f"--video: rendering is not available here ({type(err).__name__}: {first}); headless MuJoCo needs EGL "
            "(MUJOCO_GL=egl) or OSMesa (MUJOCO_GL=osmesa)"
        ) from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        env.close()
        raise UserError(f"--video: env {config.env!r} renders no rgb_array frames")
    return env


def episode_frames(env: gym.Env, task: Any, act: Callable[[np.ndarray], np.ndarray], seed: int) -> List[np.ndarray]:
    """One episode of ``task`` acting with ``act(obs) -> action``; every ``FRAME_EVERY``-th frame."""
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    done, t = False, 0
    while not done:
        obs, _, terminated, truncated, _ = env.step(act(obs))
        done, t = terminated or truncated, t + 1
        if t % FRAME_EVERY == 0 or done:
            frames.append(env.render())
    return frames


def mean_action_policy(module: Any, weights: Dict[str, np.ndarray], action_space: gym.spaces.Box) -> Callable[[np.ndarray], np.ndarray]:
    """``obs -> mean action`` of ``module`` run with ``weights`` (the module's own parameters untouched)."""
    dtype = next(module.parameters()).dtype
    own = dict(module.named_parameters())  # an inference-only module has no value network
    params = {name: torch.as_tensor(np.asarray(value), dtype=dtype) for name, value in weights.items() if name in own}

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = torch.func.functional_call(module, params, ({Columns.OBS: torch.as_tensor(obs, dtype=dtype)[None]},))
        mean = MaskedDiagGaussian.from_logits(out[Columns.ACTION_DIST_INPUTS]).loc[0]
        return np.clip(mean.numpy(), action_space.low, action_space.high)

    return act


def write_gif(frames: Sequence[np.ndarray], path: Path, seconds_per_frame: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, int(1000 * seconds_per_frame)), loop=0)
    return path


def adaptation_videos(
    algo: Any, config: Any, tasks: Sequence[Any], num_steps: int, out_dir: Path, label: str, seed: int = 0
) -> List[Path]:
    """Adapts ``algo``'s theta to each task (as ``evaluate_adaptation`` does) and writes
    ``<label>_task<i>_step<k>.gif`` for ``k = 0..num_steps`` (``<label>_task<i>_<group>_step<k>.gif``
    where the env names task groups, e.g. bodies). Theta is unchanged."""
    env = make_render_env(config)
    try:
        per_step = algo.adapt_and_sample(list(tasks), num_steps)[1]  # the weights that sampled each step
        # The network that acts: the new stack's RLModule, or the one inside the old stack's policy.
        module = algo.get_policy().model.rl_module if algo._old_api_stack else algo.get_module()
        paths = []
        for i, task in enumerate(tasks):
            for k, weights in enumerate(per_step):
                frames = episode_frames(env, task, mean_action_policy(module, weights[i], env.action_space), seed + i)
                # After the episode: a multi-morphology env's dt is the task's body's.
                seconds = float(getattr(env.unwrapped, "dt", 0.05)) * FRAME_EVERY
                group = env.unwrapped.task_group(task)  # e.g. the body: maml_task0_Hopper_step1.gif
                name = f"{label}_task{i}_{group}_step{k}.gif" if group else f"{label}_task{i}_step{k}.gif"
                paths.append(write_gif(frames, out_dir / name, seconds))
        return paths
    finally:
        env.close()
        algo._sync_theta_to_runners()
