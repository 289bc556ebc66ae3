"""Sub-env infos handed to RLlib as the list it wants, without gymnasium's dict round trip.

RLlib's ``SingleAgentEnvRunner`` wraps its vector env in gymnasium's ``DictInfoToList``:
``SyncVectorEnv`` first packs every sub-env's info dict into per-key arrays with
``_key`` masks (``_add_info``: a new array per key and vector step), and the wrapper
then unpacks those arrays into one dict per sub-env again. At MAML's vector widths
(100 HalfCheetah sub-envs per runner) that round trip is about 12% of a vector step
(``_add_info`` alone: 0.082 s of 0.664 s per 100 vector steps, profiled). Here the
vector env keeps each sub-env's info dict as it is, and the wrapper returns that list.

What RLlib's episodes receive is the same dicts, key for key; a value keeps the type
the sub-env gave it (gymnasium's arrays would turn a Python float into ``np.float64``).
"""

from __future__ import annotations

from typing import Any, Dict, List

from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers.vector import DictInfoToList


class ListInfos(dict):
    """One vector step's infos: an empty mapping to gymnasium, one dict per sub-env in :attr:`per_env`."""

    def __init__(self, num_envs: int) -> None:
        super().__init__()
        self.per_env: List[Dict[str, Any]] = [{} for _ in range(num_envs)]


class ListInfoSyncVectorEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` whose ``infos`` keep each sub-env's info dict unpacked.

    Steps, resets and autoresets exactly as ``SyncVectorEnv``; only ``_add_info`` (the
    hook that merges one sub-env's info into the step's infos) differs. Wrap it in
    :class:`ListInfoToList` to get the list back.
    """

    @classmethod
    def around(cls, vector_env: SyncVectorEnv) -> "ListInfoSyncVectorEnv":
        """The same sub-envs (not copies), copy mode, observation mode, autoreset mode and spec.

        ``vector_env`` hands its sub-envs over: it is marked closed without closing them,
        since gymnasium closes a vector env's sub-envs when it is garbage-collected.
        """
        env = cls(
            [lambda sub_env=sub_env: sub_env for sub_env in vector_env.envs],
            copy=vector_env.copy,
            observation_mode=vector_env.observation_mode,
            autoreset_mode=vector_env.autoreset_mode,
        )
        env.spec = vector_env.spec
        vector_env.closed = True
        return env

    def _add_info(self, vector_infos: Dict[str, Any], env_info: Dict[str, Any], env_num: int) -> ListInfos:
        # Called once per sub-env and step with the step's infos so far ({} for the first).
        infos = vector_infos if isinstance(vector_infos, ListInfos) else ListInfos(self.num_envs)
        # update, not assign: in same-step autoreset a sub-env adds final_obs/final_info, then its reset info.
        infos.per_env[env_num].update(env_info)
        return infos


class ListInfoToList(DictInfoToList):
    """gymnasium's ``DictInfoToList`` that returns :class:`ListInfos` as they are (any other infos as before)."""

    def _convert_info_to_list(self, vector_infos: dict) -> List[Dict[str, Any]]:
        if isinstance(vector_infos, ListInfos):
            return vector_infos.per_env
        return super()._convert_info_to_list(vector_infos)
