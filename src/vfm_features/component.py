"""What every registered part built with options shares: its spec, options, signature and saved options.

Extractors and upsamplers are built as ``factory(spec, **options)``; a
constructor only stores its options (weights load lazily). Class attributes:

``RUNTIME_OPTIONS``
    options that change how a result is computed, not what it is (left out of
    signatures, so a classifier trained on the GPU predicts on the CPU);
``TRUST_OPTIONS``
    options that load files or code (weights paths, trust flags, configs):
    never written to or restored from a classifier file; the user gives them
    when loading, and the signature (weights hash, config) is compared.
"""

from __future__ import annotations

from typing import Any

from .hashing import jsonable


class Component:
    """A spec and its options; the base of extractors and upsamplers."""

    RUNTIME_OPTIONS: tuple[str, ...] = ("device", "batch_size", "progress", "n_threads")
    TRUST_OPTIONS: tuple[str, ...] = ("weights", "trust_checkpoint", "config")
    _SIGNATURE_KEY = "component"  # the key that names the part in its signature
    _TRANSIENT: tuple[str, ...] = ()  # attributes dropped when pickling (loaded models, locks)

    def __init__(self, spec: Any, **options: Any) -> None:
        self.spec = spec
        self.options = dict(options)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weights_hash(self) -> str | None:
        """Checksum of the weights in use (None for weight-free parts)."""
        return None

    def signature(self) -> dict[str, Any]:
        """What determines the results (name, options, weights, plugin version): caches and classifiers compare it."""
        skip = set(self.RUNTIME_OPTIONS) | {"weights", "trust_checkpoint"}
        return {self._SIGNATURE_KEY: self.name,
                "options": jsonable({k: v for k, v in self.options.items() if k not in skip}),
                "weights_hash": self.weights_hash,
                "plugin": self.spec.provenance()}

    def saved_options(self) -> dict[str, Any]:
        """The options a classifier file records: neither runtime nor trust-widening ones."""
        skip = set(self.RUNTIME_OPTIONS) | set(self.TRUST_OPTIONS)
        return {k: v for k, v in self.options.items() if k not in skip}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for attr in self._TRANSIENT:
            state.pop(attr, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_transient()

    def _init_transient(self) -> None:
        """Recreate what :attr:`_TRANSIENT` names after unpickling (locks, empty model slots)."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.name!r}{', ' + opts if opts else ''})"
