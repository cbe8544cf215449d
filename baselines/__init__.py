"""Every learner and reference agent of the suite, registered by name (lazy imports)."""

from __future__ import annotations

from metarl_bench.agents import register_agent

# name -> "module:Class". Keep alphabetical within each group.
# references
register_agent("oracle", "metarl_bench.baselines.reference:OracleAgent")
register_agent("random", "metarl_bench.baselines.reference:RandomAgent")
# classical references (bandits, tabular MDPs)
register_agent("bayes-optimal", "metarl_bench.baselines.bandits:BayesOptimalAgent")
register_agent("epsilon-greedy", "metarl_bench.baselines.bandits:EpsilonGreedyAgent")
register_agent("gittins", "metarl_bench.baselines.bandits:GittinsAgent")
register_agent("greedy", "metarl_bench.baselines.bandits:GreedyAgent")
register_agent("psrl", "metarl_bench.baselines.psrl:PSRLAgent")
register_agent("thompson", "metarl_bench.baselines.bandits:ThompsonAgent")
register_agent("ucb1", "metarl_bench.baselines.bandits:UCB1Agent")
# in-context meta-RL
register_agent("rl2", "metarl_bench.baselines.rl2:RL2Agent")
# gradient-based meta-RL
register_agent("maml-ppo", "metarl_bench.baselines.maml_rl:MAMLPPO")
register_agent("maml-trpo", "metarl_bench.baselines.maml_rl:MAMLTRPO")
register_agent("reptile", "metarl_bench.baselines.reptile_rl:ReptileRL", kind="rl")
# supervised few-shot
register_agent("fomaml", "metarl_bench.baselines.fewshot_maml:FOMAMLAgent", kind="supervised")
register_agent("maml", "metarl_bench.baselines.fewshot_maml:MAMLAgent", kind="supervised")
register_agent("meta-sgd", "metarl_bench.baselines.fewshot_metasgd:MetaSGDAgent", kind="supervised")
register_agent("oracle", "metarl_bench.baselines.fewshot_baselines:OracleAgent", kind="supervised")
register_agent("pretrained", "metarl_bench.baselines.fewshot_baselines:PretrainedAgent", kind="supervised")
register_agent("prior-mean", "metarl_bench.baselines.fewshot_baselines:PriorMeanAgent", kind="supervised")
register_agent("reptile", "metarl_bench.baselines.fewshot_reptile:ReptileAgent", kind="supervised")
register_agent("scratch", "metarl_bench.baselines.fewshot_baselines:ScratchAgent", kind="supervised")
