"""gazecrop training pipeline (imports torch; installed with the ``[train]`` extra).

- :mod:`gazecrop.train.teacher`: DeepGaze II-style teacher ensemble on frozen EfficientNet-Lite features
  (``python -m gazecrop.train.teacher --help``). Use :func:`gazecrop.train.teacher.load_ensemble` /
  :func:`gazecrop.train.teacher.load_member` to get trained teacher modules.
- :mod:`gazecrop.train.probe`: the shipped student, ImageNet EfficientNet-Lite0 cut after stage 5 + DeepGaze II
  readout, distilled from the ensemble (:mod:`gazecrop.train.distill`), Fisher-pruned
  (:mod:`gazecrop.train.prune`) and exported through :mod:`gazecrop.train.convert_backbone` (``--from``);
  ``weights/MODEL_CARD.md`` has the exact commands.
- :mod:`gazecrop.train.student` (+ ``export``, ``average``): the from-scratch DenseNet comparison baseline.

Caches (backbone features, checkpoints) live outside the repository in ``$GAZECROP_CACHE``
(default ``~/.cache/gazecrop``).
"""
