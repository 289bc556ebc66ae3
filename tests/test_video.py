"""``rllib-maml evaluate --video``: GIFs of the policy before and after each inner step, rendered headless.

MuJoCo renders through EGL here (``MUJOCO_GL=egl``, set by the CLI without a display;
the test session imports MuJoCo only through gymnasium, after conftest). Where
rendering fails, the command ends with one line naming the cause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rllib_maml import MAMLConfig
from rllib_maml.tools.cli import EXIT_USAGE, main
from rllib_maml.tools.video import make_render_env
from rllib_maml.tools.errors import UserError

from test_cli import TUNED, checkpoints_under, train_args


def frames_of(path: Path) -> list:
    image = Image.open(path)
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    return frames


def test_evaluate_writes_a_gif_per_task_and_inner_step(ray_session: None, tmp_path: Path, capsys) -> None:
    assert main(train_args(TUNED / "halfcheetah-rand-direc.yaml", tmp_path / "results")) == 0
    checkpoint = checkpoints_under(tmp_path / "results")[-1]
    code = main(["evaluate", str(checkpoint), "--tasks", "1", "--steps", "1", "--num-env-runners", "0",
                 "--video", str(tmp_path / "video")])
    assert code == 0, capsys.readouterr().err
    gifs = sorted((tmp_path / "video").glob("*.gif"))
    assert [p.name for p in gifs] == ["maml_task0_step0.gif", "maml_task0_step1.gif"]
    before, after = frames_of(gifs[0]), frames_of(gifs[1])
    assert len(before) == len(after) == 51  # 100 steps, every 2nd frame, plus the first
    assert before[0].std() > 10  # a rendered scene, not a blank frame
    # Same task and start state, other weights: the cheetah moves differently by the end.
    # Mean actions, so the same weights give identical frames (0 pixels differ). At the
    # YAML's action scale 10 one inner step after one iteration changed 8-12% of the
    # last frame's pixels (mean |difference| 0.20-0.27, too small for a fixed 0.5 bound).
    changed = (np.abs(before[-1] - after[-1]).sum(axis=-1) > 0).mean()
    assert changed > 0.02, f"only {changed:.1%} of the last frame's pixels differ"
    assert "2 GIFs in" in capsys.readouterr().out


def test_an_env_that_cannot_render_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    config = MAMLConfig().environment("rllib_maml/Navigation2D-v0")
    with pytest.raises(UserError, match="renders no rgb_array frames|rendering is not available"):
        make_render_env(config)
    import gymnasium as gym

    def broken_render(self):  # as a machine without EGL or OSMesa fails
        raise RuntimeError("Failed to initialize OpenGL")

    monkeypatch.setattr(gym.envs.mujoco.mujoco_env.MujocoEnv, "render", broken_render)
    with pytest.raises(UserError, match=r"rendering is not available here \(RuntimeError: Failed to initialize OpenGL\)"):
        make_render_env(MAMLConfig().environment("rllib_maml/HalfCheetahRandDirec-v0"))


def test_ppo_films_only_with_video(tmp_path: Path, capsys) -> None:
    code = main(["evaluate", str(tmp_path), "--ppo", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1, err


def test_the_multi_morphology_env_renders_each_body_at_its_own_speed(monkeypatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")  # as the CLI sets it; read when the first viewer is made
    config = MAMLConfig().environment(
        "rllib_maml/MultiMorphologyLocomotion-v0", env_config={"morphologies": ["Hopper", "Ant"], "directions": True}
    )
    env = make_render_env(config)  # the path `evaluate --video` takes: 240 x 240 rgb_array frames
    try:
        frames, fps = {}, {}
        for body in ("Hopper", "Ant"):
            env.unwrapped.set_task((body, 1.0))
            env.reset(seed=0)
            env.step(env.action_space.sample())
            frames[body], fps[body] = env.render(), env.unwrapped.metadata["render_fps"]
            assert env.unwrapped.dt == pytest.approx(1.0 / fps[body])
        assert frames["Hopper"].shape == frames["Ant"].shape == (240, 240, 3)
        assert frames["Hopper"].std() > 10  # a rendered scene, not a blank frame
        assert np.abs(frames["Hopper"].astype(int) - frames["Ant"]).mean() > 5  # two different bodies
        assert (fps["Hopper"], fps["Ant"]) == (125, 20)
    finally:
        env.close()
