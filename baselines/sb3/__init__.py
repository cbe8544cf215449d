"""Non-meta baselines built on Stable-Baselines3 and sb3-contrib: ``ppo``, ``multitask-ppo``,
``multitask-ppo-finetune``, ``task-ppo`` and ``recurrent-ppo``."""
