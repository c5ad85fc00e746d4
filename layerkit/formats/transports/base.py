"""The two interfaces every transport implements (defined in :mod:`layerkit.formats.imagesource`)."""

from ..imagesource import ImageDestination, ImageSource, LayerSource, SourceImage

__all__ = ["ImageDestination", "ImageSource", "LayerSource", "SourceImage"]
