"""zoo-mlp: the MLP encoder and decoder of "Auto-Encoding Variational Bayes", a VampPrior and a cyclical ELBO."""
