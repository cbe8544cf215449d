"""In-context meta-RL: RL² (a recurrent policy that adapts through its hidden state)."""
