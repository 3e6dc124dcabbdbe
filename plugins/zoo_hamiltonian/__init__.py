"""zoo-hamiltonian: Hamiltonian VAEs: HVAE (Caterini et al. 2018) and RHVAE (Chadebec et al. 2020).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``hamiltonian = "zoo_hamiltonian.plugin"``).
"""
