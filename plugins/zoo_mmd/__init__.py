"""zoo-mmd: models matched to their prior by maximum mean discrepancy: WAE-MMD (Tolstikhin et al. 2018) and InfoVAE-MMD (Zhao et al. 2019).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``mmd = "zoo_mmd.plugin"``).
"""
