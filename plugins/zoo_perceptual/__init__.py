"""zoo-perceptual: VAEs with a perceptual reconstruction term: MSSSIM-VAE (Snell et al. 2017).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``perceptual = "zoo_perceptual.plugin"``).
"""
