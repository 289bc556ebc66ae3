"""MuJoCo task distributions: gymnasium API, seeding, tasks, multi-morphology masking, MAML runs."""

from __future__ import annotations

import math
import pickle
from typing import Any, List, Tuple

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ray.rllib.core.columns import Columns

from rllib_maml import MAMLConfig, MAMLTorchRLModule, MaskedDiagGaussian
from rllib_maml.envs import ENVS
from rllib_maml.envs.multi_morphology import MultiMorphologyLocomotionEnv

MULTI = "rllib_maml/MultiMorphologyLocomotion-v0"
MUJOCO_IDS = [
    "rllib_maml/HalfCheetahRandDirec-v0",
    "rllib_maml/HalfCheetahRandVel-v0",
    "rllib_maml/AntRandDirec-v0",
    "rllib_maml/AntRandGoal-v0",
    MULTI,
]
HORIZONS = {MUJOCO_IDS[0]: 100, MUJOCO_IDS[1]: 100, MUJOCO_IDS[2]: 100, MUJOCO_IDS[3]: 200, MULTI: 200}


def rollout(env: gym.Env, seed: int, actions: np.ndarray) -> Tuple[List[np.ndarray], List[float], List[Any]]:
    """Observations, rewards and info tasks of one seeded episode under fixed actions."""
    obs, info = env.reset(seed=seed)
    observations, rewards, tasks = [obs], [], [info["task"]]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        tasks.append(info["task"])
        if terminated or truncated:
            break
    return observations, rewards, tasks


def reward_terms(info: dict) -> float:
    return sum(float(v) for k, v in info.items() if k.startswith("reward_"))


# --- every env ---------------------------------------------------------------------
@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_registered_with_horizon(env_id: str) -> None:
    assert ENVS[env_id].max_episode_steps == HORIZONS[env_id]
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == HORIZONS[env_id]
    env.close()


@pytest.mark.parametrize(
    "env_id, kwargs",
    [(env_id, {}) for env_id in MUJOCO_IDS]
    + [(MULTI, {"morphologies": ["Swimmer", "Walker2d"], "directions": True})],
)
@pytest.mark.filterwarnings("ignore:.*Box observation space m.*infinity:UserWarning")  # as every MuJoCo env
def test_check_env(env_id: str, kwargs: dict) -> None:
    env = gym.make(env_id, **kwargs)
    # Rendering needs an OpenGL context, which headless CI lacks.
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    env_a, env_b = gym.make(env_id), gym.make(env_id)
    actions = np.random.default_rng(0).uniform(-1, 1, (40,) + env_a.action_space.shape).astype(np.float32)
    obs_a, rew_a, tasks_a = rollout(env_a, 123, actions)
    obs_b, rew_b, tasks_b = rollout(env_b, 123, actions)
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    assert rew_a == rew_b
    for task_a, task_b in zip(tasks_a, tasks_b):
        np.testing.assert_array_equal(np.asarray(task_a, dtype=object), np.asarray(task_b, dtype=object))
    # A second seeded reset of the same env repeats it as well (task stream included).
    obs_c, rew_c, _ = rollout(env_a, 123, actions)
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_c))
    assert rew_a == rew_c
    # Another seed gives another start state.
    assert not np.array_equal(env_a.reset(seed=124)[0], obs_a[0])
    env_a.close()
    env_b.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_set_get_task_round_trip(env_id: str) -> None:
    env = gym.make(env_id)
    base = env.unwrapped
    base.reset(seed=0)
    tasks = base.sample_tasks(4)
    assert len(tasks) == 4
    for task in tasks:
        base.set_task(task)
        np.testing.assert_array_equal(np.asarray(base.get_task(), dtype=object), np.asarray(task, dtype=object))
        for _ in range(2):  # a set task stays for every following episode
            _, info = env.reset()
            np.testing.assert_array_equal(np.asarray(info["task"], dtype=object), np.asarray(task, dtype=object))
            _, _, _, _, info = env.step(env.action_space.sample())
            np.testing.assert_array_equal(np.asarray(info["task"], dtype=object), np.asarray(task, dtype=object))
    with pytest.raises(ValueError):
        base.set_task("not a task" if env_id != MULTI else "Humanoid")
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_each_reset_draws_a_task_when_none_is_set(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=1)
    drawn = {repr(env.reset()[1]["task"]) for _ in range(30)}
    assert len(drawn) >= 2
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_reward_is_sum_of_reward_terms(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=2)
    for _ in range(10):
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(reward_terms(info), rel=1e-5, abs=1e-5)
        if terminated:
            break
    env.close()


# --- single-morphology reward definitions --------------------------------------------
@pytest.mark.parametrize("env_id", ["rllib_maml/HalfCheetahRandDirec-v0", "rllib_maml/AntRandDirec-v0"])
def test_direction_flips_only_the_forward_reward(env_id: str) -> None:
    env = gym.make(env_id)
    actions = np.random.default_rng(1).uniform(-1, 1, (10,) + env.action_space.shape).astype(np.float32)
    results = {}
    for direction in (1.0, -1.0):
        env.unwrapped.set_task(direction)
        env.reset(seed=5)
        results[direction] = [env.step(a) for a in actions]
    for fwd, bwd in zip(results[1.0], results[-1.0]):
        np.testing.assert_array_equal(fwd[0], bwd[0])  # same dynamics
        assert bwd[4]["reward_forward"] == pytest.approx(-fwd[4]["reward_forward"])
        assert fwd[1] - bwd[1] == pytest.approx(2 * fwd[4]["reward_forward"])
        assert fwd[4]["reward_forward"] == pytest.approx(fwd[4]["x_velocity"])
    env.close()


def test_half_cheetah_rand_vel_reward() -> None:
    env = gym.make("rllib_maml/HalfCheetahRandVel-v0")
    env.reset(seed=0)
    velocities = env.unwrapped.sample_tasks(1000)
    assert 0.0 <= min(velocities) < 0.1 and 1.9 < max(velocities) <= 2.0
    env.unwrapped.set_task(1.5)
    env.reset()
    action = np.full(6, 0.5, np.float32)
    _, reward, _, _, info = env.step(action)
    expected = -abs(info["x_velocity"] - 1.5) - 0.05 * float(np.sum(action**2))
    assert reward == pytest.approx(expected, rel=1e-5)
    env.close()


def test_ant_rand_goal_distribution_and_reward() -> None:
    env = gym.make("rllib_maml/AntRandGoal-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (29,)  # qpos with x, y + qvel; no contact forces
    goals = np.stack(env.unwrapped.sample_tasks(2000))
    radii = np.linalg.norm(goals, axis=1)
    assert radii.max() <= 3.0 and radii.max() > 2.9
    assert abs(np.mean(radii <= 1.5) - 0.25) < 0.05  # uniform in area, not in radius
    goal = np.array([1.0, -2.0])
    env.unwrapped.set_task(goal)
    obs, _ = env.reset()
    action = np.zeros(8, np.float32)
    _, reward, terminated, _, info = env.step(action)
    xy = env.unwrapped.data.qpos[:2]
    assert info["goal_distance"] == pytest.approx(float(np.abs(xy - goal).sum()))
    assert reward == pytest.approx(-info["goal_distance"] + info["reward_contact"])
    assert info["reward_survive"] == 0.0 and not terminated
    env.close()


def test_ant_rand_direc_excludes_contact_forces() -> None:
    env = gym.make("rllib_maml/AntRandDirec-v0")
    assert env.observation_space.shape == (27,)
    env.close()


# --- multi-morphology ----------------------------------------------------------------
def test_multi_morphology_switches_model_and_pads_observations() -> None:
    env = gym.make(MULTI)
    base = env.unwrapped
    assert base.morphologies == ("Ant", "HalfCheetah", "Hopper", "Walker2d", "Swimmer")
    assert env.observation_space.shape == (27 + 5,)
    assert env.action_space.shape == (8,)
    expected = {"Ant": (15, 27, "front_left_leg"), "HalfCheetah": (9, 17, "bthigh"), "Hopper": (6, 11, "foot"),
                "Walker2d": (9, 17, "foot_left"), "Swimmer": (5, 8, "mid")}
    env.reset(seed=0)
    for index, name in enumerate(base.morphologies):
        env.unwrapped.set_task(name)
        obs, info = env.reset()
        nq, obs_dim, body = expected[name]
        model = base.morphology_env.model
        assert info["morphology"] == name and base.task_group(name) == name
        assert model.nq == nq
        assert body in [model.body(i).name for i in range(model.nbody)]
        for obs in (obs, env.step(env.action_space.sample())[0]):
            assert obs.shape == env.observation_space.shape
            np.testing.assert_array_equal(obs[-5:], np.eye(5)[index])
            np.testing.assert_array_equal(obs[obs_dim:27], 0.0)
        np.testing.assert_array_equal(base.action_mask_table[index], np.arange(8) < base.morphology_env.action_space.shape[0])
    assert base.action_mask_table.dtype == np.float32
    env.close()


def test_multi_morphology_meta_batches_cover_every_morphology() -> None:
    env = gym.make(MULTI)
    base = env.unwrapped
    env.reset(seed=0)
    for _ in range(5):
        tasks = base.sample_tasks(10)
        assert sorted(tasks) == sorted(base.morphologies * 2)
    firsts = {base.sample_tasks(3)[0] for _ in range(60)}
    assert firsts == set(base.morphologies)
    env.close()


def test_multi_morphology_shares_skew_the_rounds() -> None:
    env = gym.make(MULTI, directions=True, shares={"Ant": 4})
    base = env.unwrapped
    assert base.shares == {"Ant": 4, "HalfCheetah": 1, "Hopper": 1, "Walker2d": 1, "Swimmer": 1}
    env.reset(seed=0)
    for _ in range(3):
        names = [name for name, _ in base.sample_tasks(16)]  # two rounds of 8
        assert {n: names.count(n) for n in base.morphologies} == {
            "Ant": 8, "HalfCheetah": 2, "Hopper": 2, "Walker2d": 2, "Swimmer": 2}
    # Without shares the rounds are as before the option existed: one permutation of the names each.
    plain, ones = (gym.make(MULTI, shares=s).unwrapped for s in (None, {n: 1 for n in base.morphologies}))
    for e in (plain, ones):
        e.reset(seed=5)
    assert plain.sample_tasks(23) == ones.sample_tasks(23)
    plain.reset(seed=5)
    rng = np.random.default_rng()
    rng.bit_generator.state = plain.np_random.bit_generator.state
    assert plain.sample_tasks(5) == [plain.morphologies[i] for i in rng.permutation(5)]
    for bad, culprit in (({"Humanoid": 2}, "Humanoid"), ({"Ant": 0}, "Ant"), ({"Ant": 1.5}, "Ant"), ([2], "shares")):
        with pytest.raises(ValueError, match=culprit):
            MultiMorphologyLocomotionEnv(shares=bad)
    for e in (env, plain, ones):
        e.close()


def test_multi_morphology_masked_action_dims_have_no_effect() -> None:
    env = gym.make(MULTI, morphologies=["Hopper", "Ant"])
    env.unwrapped.set_task("Hopper")
    action = np.random.default_rng(0).uniform(-1, 1, 8).astype(np.float32)
    other = action.copy()
    other[3:] = -other[3:]  # only Hopper's masked dims differ
    outcomes = []
    for a in (action, other, np.r_[-action[:1], action[1:]].astype(np.float32)):
        env.reset(seed=9)
        outcomes.append(env.step(a)[:2])
    np.testing.assert_array_equal(outcomes[0][0], outcomes[1][0])
    assert outcomes[0][1] == outcomes[1][1]
    assert not np.array_equal(outcomes[0][0], outcomes[2][0])  # a valid dim does matter
    env.close()


def test_multi_morphology_never_rebuilds_an_env() -> None:
    before = MultiMorphologyLocomotionEnv.num_morphology_builds
    env = gym.make(MULTI, morphologies=["Hopper", "Swimmer", "HalfCheetah"])
    assert MultiMorphologyLocomotionEnv.num_morphology_builds == before + 3
    base = env.unwrapped
    env.reset(seed=0)
    env_ids = {}
    for i in range(12):
        if i % 2:
            env.unwrapped.set_task(base.morphologies[i % 3])
        _, info = env.reset(seed=i if i % 4 == 0 else None)
        env_ids.setdefault(info["morphology"], id(base.morphology_env))
        assert env_ids[info["morphology"]] == id(base.morphology_env)
        env.step(env.action_space.sample())
    assert MultiMorphologyLocomotionEnv.num_morphology_builds == before + 3
    env.close()


def test_multi_morphology_directions() -> None:
    env = gym.make(MULTI, morphologies=["HalfCheetah", "Swimmer"], directions=True)
    base = env.unwrapped
    env.reset(seed=0)
    tasks = base.sample_tasks(50)
    assert {t[0] for t in tasks} == {"HalfCheetah", "Swimmer"} and {t[1] for t in tasks} == {-1.0, 1.0}
    assert base.task_group(("Swimmer", -1.0)) == "Swimmer"
    with pytest.raises(ValueError):
        base.set_task("Swimmer")  # needs a direction
    assert env.action_space.shape == (6,)
    action = np.full(6, 0.3, np.float32)
    steps = {}
    for direction in (1.0, -1.0):
        base.set_task(("HalfCheetah", direction))
        env.reset(seed=3)
        steps[direction] = env.step(action)
    np.testing.assert_array_equal(steps[1.0][0], steps[-1.0][0])
    fwd = steps[1.0][4]["reward_forward"]
    assert steps[-1.0][4]["reward_forward"] == pytest.approx(-fwd)
    assert steps[1.0][1] - steps[-1.0][1] == pytest.approx(2 * fwd)
    env.close()


def test_multi_morphology_config_compatibility() -> None:
    # RLlib's env_config dict (with the "num_envs" RLlib adds) as the first argument.
    env = MultiMorphologyLocomotionEnv({"morphologies": ["Hopper"], "num_envs": 4})
    assert env.morphologies == ("Hopper",) and env.observation_space.shape == (12,)
    # Keyword arguments win over the config dict.
    env = MultiMorphologyLocomotionEnv({"morphologies": ["Hopper"]}, morphologies=["Swimmer", "Ant"])
    assert env.morphologies == ("Swimmer", "Ant")
    assert pickle.loads(pickle.dumps(env)).morphologies == ("Swimmer", "Ant")
    for bad in ({"morphologies": ["Humanoid"]}, {"morphologies": []}, {"morphologies": ["Ant", "Ant"]}, {"legs": 4}):
        with pytest.raises(ValueError):
            MultiMorphologyLocomotionEnv(bad)
    vector_env = gym.make_vec(MULTI, num_envs=2, vectorization_mode="sync", morphologies=["Hopper", "Walker2d"])
    vector_env.call("set_task", "Walker2d")
    obs, info = vector_env.reset(seed=0)
    assert obs.shape == (2, 17 + 2)
    np.testing.assert_array_equal(obs[:, -2:], [[0.0, 1.0], [0.0, 1.0]])
    assert list(info["morphology"]) == ["Walker2d", "Walker2d"]
    vector_env.close()


def test_masked_dims_do_not_reach_logp_entropy_kl_or_gradients() -> None:
    env = gym.make(MULTI)
    base = env.unwrapped
    table = base.action_mask_table
    module = MAMLTorchRLModule(
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"action_masks": table.tolist(), "fcnet_hiddens": [16]},
    )
    hopper = base.morphologies.index("Hopper")  # 3 valid action dims of 8
    observations = []
    env.unwrapped.set_task("Hopper")
    for seed in range(4):
        observations.append(env.reset(seed=seed)[0])
    obs = torch.as_tensor(np.stack(observations), dtype=torch.float32)
    inputs = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    inputs.retain_grad()
    dist = MaskedDiagGaussian.from_logits(inputs)
    np.testing.assert_array_equal(dist.mask.detach().numpy(), np.tile(table[hopper], (4, 1)))
    actions = torch.randn(4, 8)
    dist.logp(actions).sum().backward()
    mean_grad, log_std_grad, _ = inputs.grad.chunk(3, dim=-1)
    for grad in (mean_grad, log_std_grad, module.log_std.grad.expand(4, 8)):
        assert torch.all(grad[:, 3:] == 0.0)
        assert torch.all(grad[:, :3].abs().sum(0) > 0)
    last_layer = module.pi[-1]
    assert torch.all(last_layer.weight.grad[3:] == 0.0) and torch.all(last_layer.bias.grad[3:] == 0.0)
    assert last_layer.weight.grad[:3].abs().sum() > 0

    # logp, entropy and KL ignore the masked dims entirely.
    mean, log_std, mask = inputs.detach().chunk(3, dim=-1)
    changed = torch.cat([mean[:, :3], mean[:, 3:] + 5.0], -1), torch.cat([log_std[:, :3], log_std[:, 3:] - 2.0], -1)
    other = MaskedDiagGaussian(loc=changed[0], scale=changed[1].exp(), mask=mask)
    same = MaskedDiagGaussian(loc=mean, scale=log_std.exp(), mask=mask)
    assert torch.equal(other.logp(actions), same.logp(actions))
    assert torch.equal(other.entropy(), same.entropy())
    assert torch.all(same.kl(other) == 0.0)
    shifted = MaskedDiagGaussian(loc=mean + 0.5, scale=log_std.exp(), mask=mask)
    assert torch.all(same.kl(shifted) > 0.0)
    assert torch.allclose(same.entropy(), torch.full((4,), 3 * (0.5 + 0.5 * math.log(2 * math.pi))) + log_std[:, :3].sum(-1))
    env.close()


# --- MAML on every env -----------------------------------------------------------------
def tiny_maml(env_id: str, env_config: dict | None = None, meta_batch_size: int = 2, model_config: dict | None = None) -> Any:
    # gym.make's max_episode_steps shortens the registered horizon to keep the test fast.
    return (
        MAMLConfig()
        .environment(env_id, env_config={"max_episode_steps": 25, **(env_config or {})})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(meta_batch_size=meta_batch_size, episodes_per_task=2, maml_optimizer_steps=1)
        .rl_module(model_config={"fcnet_hiddens": [32], **(model_config or {})})
        .debugging(seed=0)
        .build_algo()
    )


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_maml_trains_two_iterations(ray_session: None, env_id: str) -> None:
    algo = tiny_maml(env_id)
    try:
        if env_id == MULTI:
            table = MultiMorphologyLocomotionEnv().action_mask_table
            np.testing.assert_array_equal(algo.config.model_config["action_masks"], table)
        for _ in range(2):
            result = algo.train()
            assert math.isfinite(result["maml"]["adaptation_delta"])
            assert math.isfinite(result["maml"]["episode_return_mean_adapt_1"])
            assert result["env_runners"]["num_env_steps_sampled"] > 0
            assert result["env_runners"]["episode_len_mean"] <= 25
    finally:
        algo.stop()


def test_maml_reports_per_morphology_metrics(ray_session: None) -> None:
    algo = tiny_maml(MULTI, {"morphologies": ["Hopper", "HalfCheetah"]}, meta_batch_size=2)
    try:
        result = algo.train()
        per_task = result["maml"]["per_task"]
        assert set(per_task) == {"Hopper", "HalfCheetah"}
        for curve in per_task.values():
            assert math.isfinite(curve["adaptation_delta"])
            assert math.isfinite(curve["episode_return_mean_adapt_0"])
    finally:
        algo.stop()


def test_per_body_options_train_each_bodys_own_parameters(ray_session: None) -> None:
    algo = tiny_maml(
        MULTI,
        {"morphologies": ["Hopper", "HalfCheetah"]},
        model_config={"group_input_layers": True, "group_log_std": True, "learn_inner_lr": True},
    )
    try:
        module = algo.get_module()
        body = 17  # HalfCheetah's observation size; Hopper's 11 are zero-padded to it
        assert module.pi[0].in_features == 2 * body + 2 and module.log_std.shape == (2, 6)
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        result = algo.train()
        after = dict(algo.get_module().named_parameters())
        change = (after["pi.0.weight"].detach() - before["pi.0.weight"]).abs()
        # The meta-update reaches both bodies' blocks; Hopper's padding columns (11..16 of its block) stay put.
        hopper, cheetah = change[:, :body], change[:, body : 2 * body]
        assert hopper[:, :11].sum() > 0 and cheetah.sum() > 0
        assert hopper[:, 11:].sum() == 0
        # Each body's log-std row moves in its own action entries; Hopper's masked 3..5 stay put.
        std_change = (after["log_std"].detach() - before["log_std"]).abs()
        assert (std_change[0, :3] > 0).all() and (std_change[1] > 0).all()
        assert std_change[0, 3:].sum() == 0
        # Each body's learned inner step size moves, and is reported under its name.
        assert (after["inner_lr_log_scale"].detach() != before["inner_lr_log_scale"]).all()
        learned = {k: v for k, v in result["learners"].items() if k.startswith("inner_lr_")}
        assert set(learned) == {"inner_lr_Hopper", "inner_lr_HalfCheetah"}
        scale = after["inner_lr_log_scale"].detach().exp() * algo.config.inner_lr
        assert learned["inner_lr_Hopper"] == pytest.approx(float(scale[0]))
    finally:
        algo.stop()
