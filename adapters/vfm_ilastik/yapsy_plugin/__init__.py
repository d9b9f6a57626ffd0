"""Folder that released ilastik 1.4.x searches for ``*.yapsy-plugin`` files.

The entry point ``ilastik.objectfeatures: vfm_features = vfm_ilastik.yapsy_plugin`` names
this package; ilastik adds its folder to yapsy's plugin places, finds
``vfm_features.yapsy-plugin`` and imports the module it names, ``vfm_objfeats.py``.
"""
