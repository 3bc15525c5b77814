"""gazecrop training pipeline (imports torch; installed with the ``[train]`` extra).

- :mod:`gazecrop.train.teacher`: DeepGaze II-style teacher ensemble on frozen EfficientNet-Lite features
  (``python -m gazecrop.train.teacher --help``). Use :func:`gazecrop.train.teacher.load_ensemble` /
  :func:`gazecrop.train.teacher.load_member` to get trained teacher modules.

Caches (backbone features, checkpoints) live outside the repository in ``$GAZECROP_CACHE``
(default ``~/.cache/gazecrop``).
"""
