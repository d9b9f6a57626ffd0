"""napari adapter: a dock widget that trains and predicts with any registered extractor, upsampler and head.

The widget (:mod:`vfm_napari.widget`, registered in ``napari.yaml``) runs a
:class:`Session` in napari's ``thread_worker``; the session is Qt-free, so scripts and
tests can run the same steps without a viewer. See docs/adapters-napari.md.
"""

from vfm_napari.session import Progress, Result, Session, Settings, image_axes

__all__ = ["Progress", "Result", "Session", "Settings", "image_axes"]
