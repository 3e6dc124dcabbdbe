"""Burda et al.'s MLP networks (one and two stochastic layers) and the recipes that train them
with the importance-weighted family of objectives (IWAE, MIWAE, PIWAE, CIWAE), a zoo plugin
written as any third party would. The objectives themselves are zoo's own (``zoo/objectives.py``,
registered by ``zoo.builtins``); this plugin registers networks, a prior and recipes."""
