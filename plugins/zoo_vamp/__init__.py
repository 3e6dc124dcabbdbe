"""zoo-vamp: the VampPrior of Tomczak & Welling, "VAE with a VampPrior" (AISTATS 2018), with the
gated MLP encoder and decoder the paper trains it with.

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``vamp = "zoo_vamp.plugin"``).
"""
