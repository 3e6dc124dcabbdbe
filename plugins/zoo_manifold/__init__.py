"""zoo-manifold: VAEs with latents on a manifold: the hyperspherical VAE (Davidson et al. 2018) and the Poincare VAE (Mathieu et al. 2019).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``manifold = "zoo_manifold.plugin"``).
"""
