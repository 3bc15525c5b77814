"""gazecrop: predict where people look in a photo (a saliency map learned from eye-tracking data) and crop
it to any aspect ratio around what they would look at.

The native core (``gazecrop._core``) runs a distilled, Fisher-pruned DenseNet-style network from a flat
weights file (``.gzw``, see ``docs/weights-format.md``).
"""

from ._image import EncodedImage, ImageError, ImageTooLargeError
from .api import Prediction, crop, crop_box, crops, predict, saliency_map, thumbnail
from .crop import DEFAULT_STRATEGY, STRATEGIES, Candidate, CropBox, CropResult, Peak, Zoom, parse_aspect
from .model import Model, load_model
from .weights import WeightsFormatError

__version__ = "0.1.0"

__all__ = ["Model", "load_model", "WeightsFormatError", "__version__",
           "saliency_map", "crop_box", "crops", "crop", "thumbnail", "predict", "Prediction",
           "CropBox", "CropResult", "Candidate", "Zoom", "Peak", "STRATEGIES", "DEFAULT_STRATEGY", "parse_aspect",
           "ImageError", "ImageTooLargeError", "EncodedImage"]
