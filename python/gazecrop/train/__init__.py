"""gazecrop training pipeline (imports torch; installed with the ``[train]`` extra).

- :mod:`gazecrop.train.teacher`: DeepGaze II-style teacher ensemble on frozen EfficientNet-Lite features
  (``python -m gazecrop.train.teacher --help``). Use :func:`gazecrop.train.teacher.load_ensemble` /
  :func:`gazecrop.train.teacher.load_member` to get trained teacher modules.
- :mod:`gazecrop.train.densenet_student` (+ ``distill``, ``prune``, ``average``, ``export``): the from-scratch DenseNet
  student, the shipped default (``weights/MODEL_CARD.md``).
- :mod:`gazecrop.train.student`: the EfficientNet-Lite0 student (ImageNet features cut after stage 5 + DeepGaze II
  readout), distilled from the ensemble (:mod:`gazecrop.train.distill`), Fisher-pruned
  (:mod:`gazecrop.train.prune`), fine-tuned with fairness terms (:mod:`gazecrop.train.fairness`: a
  demographic-parity term on tune-half portrait pairs with within-tile distillation, a face-share term on
  training photos, colour-robust views) and exported through
  :mod:`gazecrop.train.convert_backbone` (``--from``): the candidates in ``weights/candidate-lite0`` and
  ``weights/candidate-fair`` (their ``MODEL_CARD.md`` have the exact commands; not the default yet).
- :mod:`gazecrop.train.faces`: face, eye and head boxes from OpenCV's Haar cascades (offline: the fairness
  diagnosis, and the teacher of the head map).
- :mod:`gazecrop.train.face_map`: the head map, a second output of a ``.gzw`` (weights format version 3)
  distilled from those face boxes on the training photos; the crop layer keeps box edges out of its heads
  (``python -m gazecrop.train.face_map --help``).

Caches (backbone features, checkpoints) live outside the repository in ``$GAZECROP_CACHE``
(default ``~/.cache/gazecrop``).
"""
