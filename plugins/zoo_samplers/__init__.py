"""zoo-samplers: post-hoc priors fitted to a trained model's codes by zoo fit-prior: a Gaussian mixture, MAF, IAF, RealNVP and a two-stage VAE.

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``samplers = "zoo_samplers.plugin"``).
"""
