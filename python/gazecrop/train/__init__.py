"""gazecrop training pipeline (imports torch; installed with the ``[train]`` extra).

- :mod:`gazecrop.train.teacher`: DeepGaze II-style teacher ensemble on frozen EfficientNet-Lite features
  (``python -m gazecrop.train.teacher --help``). Use :func:`gazecrop.train.teacher.load_ensemble` /
  :func:`gazecrop.train.teacher.load_member` to get trained teacher modules.
- :mod:`gazecrop.train.densenet_student` (+ ``distill``, ``prune``, ``average``, ``export``): the from-scratch DenseNet
  student, the shipped default (``weights/MODEL_CARD.md``).
- :mod:`gazecrop.train.student`: the EfficientNet-Lite0 student (ImageNet features cut after stage 5 + DeepGaze II
  readout), distilled from the ensemble (:mod:`gazecrop.train.distill`), Fisher-pruned
  (:mod:`gazecrop.train.prune`) and exported through :mod:`gazecrop.train.convert_backbone` (``--from``): the
  candidate in ``weights/candidate-lite0`` (its ``MODEL_CARD.md`` has the exact commands; not the default
  while it fails the fairness regression guard).

Caches (backbone features, checkpoints) live outside the repository in ``$GAZECROP_CACHE``
(default ``~/.cache/gazecrop``).
"""
