"""Attentive probes: the ``deap`` pixel head, the ``obap`` object head and the ``hybrid`` heads.

Registered through the entry point ``vfm_features.plugins: probes``
(:mod:`.plugin`, specs only); nothing here imports torch until a probe is
built, trained or loaded. See docs/probes.md.
"""
