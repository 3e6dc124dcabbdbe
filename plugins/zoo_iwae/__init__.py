"""Burda et al.'s MLP VAEs, one and two stochastic layers, with the importance-weighted family
of objectives (IWAE, MIWAE, PIWAE, CIWAE): a zoo plugin written as any third party would."""
