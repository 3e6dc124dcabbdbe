"""zoo-flows: a normalizing-flow prior over z, a stack of RealNVP affine couplings (Dinh, Sohl-Dickstein
& Bengio, "Density estimation using Real NVP", ICLR 2017) on a standard normal, built from
``torch.distributions`` transforms; and an MLP encoder/decoder pair to go with it.

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``flows = "zoo_flows.plugin"``).
"""
