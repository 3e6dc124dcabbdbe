"""zoo-resnet: a residual convolutional encoder and decoder, and the discretized logistic (mixture)
likelihoods of Salimans et al., "PixelCNN++" (ICLR 2017), which give true likelihoods of 8-bit
grey-level images (report them as bits/dim = nll / (pixels * ln 2)).

Written as a third-party plugin: it imports only zoo's public API and is found through the
``zoo`` entry-point group (``resnet = "zoo_resnet.plugin"``).
"""
