"""Speed benchmarks, a tool on top of the suite (``metarl-bench perf``).

``envs``: batched envs against Gymnasium's ``SyncVectorEnv`` and the harness's overhead;
``maml``: maml-trpo against the same-run reference of pytorch-maml-rl's task-by-task
computation (``maml_reference``); ``rl2``: RL² scores and training throughput;
``fewshot``: batched supervised MAML against a per-task loop. The core never imports this
package; it imports learners.
"""

from metarl_bench.perf.envs import env_throughput, harness_throughput, main_perf

__all__ = ["env_throughput", "harness_throughput", "main_perf"]
