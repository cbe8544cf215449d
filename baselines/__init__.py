"""Every learner and reference agent of the suite, registered by name (lazy imports)."""

from __future__ import annotations

from metarl_bench.agents import register_agent

# name -> "module:Class". Keep alphabetical within each group.
# references
register_agent("oracle", "metarl_bench.baselines.classical.reference:OracleAgent")
register_agent("random", "metarl_bench.baselines.classical.reference:RandomAgent")
# classical references (bandits, tabular MDPs)
register_agent("bayes-optimal", "metarl_bench.baselines.classical.bandits:BayesOptimalAgent")
register_agent("epsilon-greedy", "metarl_bench.baselines.classical.bandits:EpsilonGreedyAgent")
register_agent("gittins", "metarl_bench.baselines.classical.bandits:GittinsAgent")
register_agent("greedy", "metarl_bench.baselines.classical.bandits:GreedyAgent")
register_agent("psrl", "metarl_bench.baselines.classical.psrl:PSRLAgent")
register_agent("thompson", "metarl_bench.baselines.classical.bandits:ThompsonAgent")
register_agent("ucb1", "metarl_bench.baselines.classical.bandits:UCB1Agent")
# in-context meta-RL
register_agent("rl2", "metarl_bench.baselines.incontext.rl2:RL2Agent")
# gradient-based meta-RL
register_agent("maml-ppo", "metarl_bench.baselines.gradient.maml_rl:MAMLPPO")
register_agent("maml-trpo", "metarl_bench.baselines.gradient.maml_rl:MAMLTRPO")
register_agent("reptile", "metarl_bench.baselines.gradient.reptile_rl:ReptileRL", kind="rl")
# non-meta baselines on Stable-Baselines3
register_agent("multitask-ppo", "metarl_bench.baselines.sb3.ppo:MultitaskPPO")
register_agent("multitask-ppo-finetune", "metarl_bench.baselines.sb3.ppo:MultitaskPPOFinetune")
register_agent("ppo", "metarl_bench.baselines.sb3.ppo:PPOAgent")
register_agent("recurrent-ppo", "metarl_bench.baselines.sb3.recurrent_ppo:RecurrentPPOAgent")
register_agent("task-ppo", "metarl_bench.baselines.sb3.ppo:TaskPPO")
# supervised few-shot
register_agent("fomaml", "metarl_bench.baselines.fewshot.maml:FOMAMLAgent", kind="supervised")
register_agent("maml", "metarl_bench.baselines.fewshot.maml:MAMLAgent", kind="supervised")
register_agent("meta-sgd", "metarl_bench.baselines.fewshot.metasgd:MetaSGDAgent", kind="supervised")
register_agent("oracle", "metarl_bench.baselines.fewshot.references:SupervisedOracleAgent", kind="supervised")
register_agent("pretrained", "metarl_bench.baselines.fewshot.references:PretrainedAgent", kind="supervised")
register_agent("prior-mean", "metarl_bench.baselines.fewshot.references:PriorMeanAgent", kind="supervised")
register_agent("reptile", "metarl_bench.baselines.fewshot.reptile:ReptileAgent", kind="supervised")
register_agent("scratch", "metarl_bench.baselines.fewshot.references:ScratchAgent", kind="supervised")
