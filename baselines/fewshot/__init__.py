"""Supervised few-shot learners: MAML and first-order MAML (``maml``), Meta-SGD (``metasgd``),
Reptile (``reptile``), the non-meta-learned references (``references``: oracle, prior mean,
pretrained, from scratch) and the networks and adapters they share (``common``)."""
