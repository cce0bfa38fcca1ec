"""Adapters that hand the served GenRM reward to other RL frameworks (docs/rl.md):

- ``genrm_ray.integrations.trl``: ``GenRMReward`` / ``AsyncGenRMReward`` for ``trl.GRPOTrainer(reward_funcs=[...])``
- ``genrm_ray.integrations.openrlhf``: ``reward_func`` (this file's path is OpenRLHF's ``--reward.remote_url``)
- ``genrm_ray.integrations.verl``: ``compute_score_async``, ``compute_score`` (this file's path is
  veRL's ``reward.custom_reward_function.path``)

Every adapter goes through ``genrm_ray.reward_client.RewardClient`` and raises its
``RewardServiceError`` when the service fails: no adapter turns a failure into a reward.
Nothing is imported here, so OpenRLHF and veRL load their adapter without TRL.
"""
