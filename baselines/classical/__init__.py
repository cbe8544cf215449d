"""Classical references: random and oracle agents, bandit algorithms (Bayes-optimal, Gittins,
UCB1, Thompson sampling, greedy) and posterior sampling for tabular MDPs (PSRL)."""
