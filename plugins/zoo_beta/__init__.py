"""zoo-beta: VAEs for disentanglement: beta-VAE (Higgins et al. 2017), its annealed-capacity form (Burgess et al. 2018), beta-TC-VAE (Chen et al. 2018) and FactorVAE (Kim & Mnih 2018).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``beta = "zoo_beta.plugin"``).
"""
