"""Gradient-based meta-RL: MAML-TRPO and MAML-PPO (``maml_rl``), Reptile on policies
(``reptile_rl``), the base they share (``meta_learner``: sampling, the inner policy-gradient
step, the meta-training loop, the test-time adapter) and their plumbing: policies,
rollouts, baselines and advantages (``common``), the hand-written curvature products of
small MLP policies (``mlp_curvature``)."""
