"""zoo's reference plugin: the convolutional VAE of Kingma & Welling's "Auto-Encoding Variational
Bayes", as the seed article builds it, plus the likelihoods and priors it composes with.

It is written exactly as a third-party plugin: it imports only zoo's public API and is found
through the ``zoo`` entry-point group (``aevb = "zoo_aevb.plugin"``).
"""
