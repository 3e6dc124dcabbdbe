"""zoo-vqladder: a vector-quantised encoder that trains its codebook with add_loss, and a ladder VAE."""
