"""Exceptions raised by vfm-features. Each message says what is wrong and how to fix it."""

from __future__ import annotations


class VFMFeaturesError(Exception):
    """Base class of every error raised on purpose by vfm-features."""


class InputError(VFMFeaturesError, ValueError):
    """An image, label image, mask or option that the library cannot use as given."""


class UnknownExtractorError(InputError, KeyError):
    """A name (extractor, upsampler or head) that no installed plugin registers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginValidationError(VFMFeaturesError):
    """A plugin registered something that does not follow the extractor contract."""


class NotFittedError(VFMFeaturesError, ValueError):
    """A classifier was asked to predict before ``fit``."""


class ExtractorMismatchError(VFMFeaturesError, ValueError):
    """A saved classifier is applied with other features than it was trained on."""


class WeightsError(VFMFeaturesError, RuntimeError):
    """Weights that are missing, cannot be downloaded, or fail their checksum."""


class UnknownOptionError(InputError, TypeError):
    """An option that the extractor does not take (a TypeError too, as for a bad keyword)."""
