"""zoo-ae: autoencoders with deterministic encoders: a plain AE and the regularized autoencoders RAE-L2 and RAE-GP (Ghosh et al. 2020).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``ae = "zoo_ae.plugin"``).
"""
