"""zoo-adversarial: models trained against a discriminator: the adversarial autoencoder (Makhzani et al. 2016) and VAE-GAN (Larsen et al. 2016).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``adversarial = "zoo_adversarial.plugin"``).
"""
