"""zoo-mlp: the one-hidden-layer MLP encoder and decoder of "Auto-Encoding Variational Bayes"."""
