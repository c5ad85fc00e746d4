"""The two interfaces every transport implements (defined in :mod:`layerkit.formats.imagesource`), and
:class:`~layerkit.formats.pipeline.FileLayer`, a layer whose blob is a file (layerkit's store)."""

from ..imagesource import ImageDestination, ImageSource, LayerSource, SourceImage
from ..pipeline import FileLayer

__all__ = ["FileLayer", "ImageDestination", "ImageSource", "LayerSource", "SourceImage"]
