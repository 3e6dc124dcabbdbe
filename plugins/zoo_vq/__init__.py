"""zoo-vq: VQ-VAE (van den Oord et al. 2017) and a PixelCNN prior over its codes.

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``vq = "zoo_vq.plugin"``).
"""
