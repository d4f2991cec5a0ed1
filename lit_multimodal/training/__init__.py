"""Model-agnostic training pieces shared by every module: the module base, checkpoints, metrics, loggers, results.

Recipes belong to their models (the VPT recipe in ``vision/recipe.py``, PandaGPT's schedule in
``multimodal/pandagpt/schedule.py``); ``training/`` never imports ``vision/`` or ``multimodal/``.
"""
