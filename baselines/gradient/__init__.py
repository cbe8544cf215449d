"""Gradient-based meta-RL: MAML-TRPO and MAML-PPO (``maml_rl``), Reptile on policies
(``reptile_rl``) and their plumbing: policies, rollouts, baselines and advantages
(``common``), the hand-written curvature products of small MLP policies (``mlp_curvature``)."""
