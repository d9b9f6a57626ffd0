"""The sam plugin's model table: architectures and one frozen spec per variant.

Nothing here imports torch or segment_anything, so listing stays cheap.

Sources (see docs/weights.md): URLs and xxh128 checksums from micro-sam's
``micro_sam/util.py`` ``models()`` (v1.8.10, also for Meta's three SAM files, for
which Meta publishes no checksum); SAM weights Apache-2.0 (segment-anything
README); µSAM and PathoSAM weights CC-BY-4.0 as micro-sam's bioimage.io export
declares it (the model pages themselves were not checked).

The µSAM ``vit_t_*`` variants use MobileSAM's TinyViT encoder (about 5 M
parameters in the encoder's trunk; ``mobile_sam``, installed as ``mobilesam-mirror``,
needs timm): a separate table, :data:`TINY_ARCHITECTURES` / :data:`TINY_SPECS`,
because they need other packages (extra ``musam-tiny``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields, replace

from vfm_features import ExtractorSpec, InputError

FACTORY = "vfm_features_sam._extractor:SamExtractor"
OUT_CHANNELS = 256
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamArchitecture:
    """Hyper-parameters of a SAM image encoder (``segment_anything.modeling.ImageEncoderViT``)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    out_chans: int = OUT_CHANNELS

    @property
    def grid(self) -> int:
        """Embedding cells per side of the (padded) model input."""
        return self.img_size // self.patch_size

    def as_dict(self) -> dict:
        """Plain data (for options, signatures and classifier files); :meth:`from_dict` reads it back."""
        return {**asdict(self), "global_attn_indexes": list(self.global_attn_indexes)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SamArchitecture":
        """A SamArchitecture from plain data, checked: the field names, integers, a list of block indices."""
        names = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is MISSING]
        unknown, missing = sorted(set(map(str, data)) - set(names)), [n for n in required if n not in data]
        if unknown or missing:
            raise InputError(f"architecture={dict(data)!r}: unknown field(s) {unknown}, missing {missing}; "
                             f"a SamArchitecture has {', '.join(names)}.")
        values = dict(data)
        for name, value in values.items():
            if name == "name":
                ok = isinstance(value, str)
            elif name == "global_attn_indexes":
                ok = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
            else:
                ok = _is_int(value) and value > 0
            if not ok:
                kind = {"name": "a string", "global_attn_indexes": "a list of block indices"}.get(
                    name, "a positive integer")
                raise InputError(f"architecture field {name}={value!r} must be {kind}.")
        values["global_attn_indexes"] = tuple(int(v) for v in values["global_attn_indexes"])
        return cls(**values)


@dataclass(frozen=True)
class TinyVitArchitecture:
    """Hyper-parameters of MobileSAM's TinyViT image encoder (``mobile_sam.modeling.TinyViT``).

    MobileSAM's TinyViT works only at a 1024-pixel input (its output grid is fixed
    at 64 x 64) and only with a last stage of width 320, 448 or 576 (the width
    that keeps the last stage at stride 16); :meth:`from_dict` checks both.
    """

    name: str
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    img_size: int = 1024
    patch_size: int = 16
    out_chans: int = OUT_CHANNELS
    kind: str = "tiny_vit"

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def as_dict(self) -> dict:
        return {**asdict(self), **{k: list(getattr(self, k)) for k in _TINY_LISTS}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "TinyVitArchitecture":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, data)) - set(names))
        if unknown or "name" not in data or not isinstance(data["name"], str):
            raise InputError(f"architecture={dict(data)!r}: unknown field(s) {unknown} or no name; a "
                             f"TinyVitArchitecture has {', '.join(names)}.")
        values = dict(data)
        for key in _TINY_LISTS:
            if key in values:
                value = values[key]
                if not (isinstance(value, (list, tuple)) and len(value) == 4
                        and all(_is_int(v) and v > 0 for v in value)):
                    raise InputError(f"architecture field {key}={value!r} must be four positive integers.")
                values[key] = tuple(int(v) for v in value)
        arch = cls(**values)
        if (arch.kind != "tiny_vit" or arch.img_size != 1024 or arch.patch_size != 16 or arch.out_chans != OUT_CHANNELS
                or arch.embed_dims[-1] not in (320, 448, 576)
                or any(d % h for d, h in zip(arch.embed_dims[1:], arch.num_heads[1:]))):
            raise InputError(f"architecture={dict(data)!r} cannot be built: MobileSAM's TinyViT needs img_size 1024, "
                             "patch_size 16, out_chans 256, a last width of 320, 448 or 576, and widths divisible "
                             "by their head counts.")
        return arch


_TINY_LISTS = ("embed_dims", "depths", "num_heads", "window_sizes")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Official values from segment_anything/build_sam.py.
ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture("vit_b", embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": SamArchitecture("vit_l", embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SamArchitecture("vit_h", embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}

_EBI = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io"
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything"
_OWNCLOUD = "https://owncloud.gwdg.de/index.php/s"
_NORMALIZATION = "intensities to 0..255, longest side to 1024, ImageNet mean/std, zero padding"


def _spec(name: str, architecture: str, url: str, xxh128: str, file: str, license: str,
          description: str, *, default: bool = False, channels: str = "sum") -> ExtractorSpec:
    return ExtractorSpec(
        name=name,
        factory=FACTORY,
        description=description,
        default=default,
        n_features=OUT_CHANNELS,
        input_size=1024,
        patch_size=16,
        global_context=True,
        input_channels="rgb",
        normalization=_NORMALIZATION,
        weights_url=url,
        weights_hash=f"xxh128:{xxh128}",
        weights_file=file,
        license=license,
        requires=("torch", "segment_anything"),
        install="vfm-features[sam]",
        features_version="1",
        options={"architecture": architecture, "channels": channels},
    )


# name, architecture, URL, xxh128, cache file name, licence, description
SPECS: tuple[ExtractorSpec, ...] = (
    # Segment Anything (Meta). Default vit_b (90M encoder parameters, vs 308M vit_l and 637M vit_h):
    # the one that runs in reasonable time on a CPU (25-40 s per image on 2 cores). SAM itself defaults to vit_h.
    _spec("sam:vit_b", "vit_b", f"{_SAM_URL}/sam_vit_b_01ec64.pth", "6923c33df3637b6a922d7682bfc9a86b",
          "sam_vit_b_01ec64.pth", "Apache-2.0", "Segment Anything ViT-B image encoder (natural images)",
          default=True),
    _spec("sam:vit_l", "vit_l", f"{_SAM_URL}/sam_vit_l_0b3195.pth", "a82beb3c660661e3dd38d999cc860e9a",
          "sam_vit_l_0b3195.pth", "Apache-2.0", "Segment Anything ViT-L image encoder (natural images)"),
    _spec("sam:vit_h", "vit_h", f"{_SAM_URL}/sam_vit_h_4b8939.pth", "97698fac30bd929c2e6d8d8cc15933c2",
          "sam_vit_h_4b8939.pth", "Apache-2.0", "Segment Anything ViT-H image encoder (natural images)"),
    # micro-sam (µSAM): light microscopy (lm) and electron microscopy organelles (em_organelles).
    _spec("musam:vit_b_lm", "vit_b", f"{_EBI}/diplomatic-bug/1.2/files/vit_b.pt", "fe9252a29f3f4ea53c15a06de471e186",
          "musam_vit_b_lm.pt", "CC-BY-4.0", "µSAM ViT-B fine-tuned for light microscopy", default=True),
    _spec("musam:vit_l_lm", "vit_l", f"{_EBI}/idealistic-rat/1.2/files/vit_l.pt", "017f20677997d628426dec80a8018f9d",
          "musam_vit_l_lm.pt", "CC-BY-4.0", "µSAM ViT-L fine-tuned for light microscopy"),
    _spec("musam:vit_b_em_organelles", "vit_b", f"{_EBI}/noisy-ox/1.2/files/vit_b.pt",
          "f3bf2ed83d691456bae2c3f9a05fb438", "musam_vit_b_em_organelles.pt", "CC-BY-4.0",
          "µSAM ViT-B fine-tuned for electron microscopy organelles"),
    _spec("musam:vit_l_em_organelles", "vit_l", f"{_EBI}/humorous-crab/1.2/files/vit_l.pt",
          "810b084b6e51acdbf760a993d8619f2d", "musam_vit_l_em_organelles.pt", "CC-BY-4.0",
          "µSAM ViT-L fine-tuned for electron microscopy organelles"),
    # PathoSAM: histopathology (H&E colour images: channels="rgb" keeps the colour).
    _spec("pathosam:vit_b_histopathology", "vit_b", f"{_OWNCLOUD}/sBB4H8CTmIoBZsQ/download",
          "ffd1a2cd84570458b257bd95fdd8f974", "pathosam_vit_b_histopathology.pt", "CC-BY-4.0",
          "PathoSAM ViT-B fine-tuned for histopathology (RGB)", default=True, channels="rgb"),
    _spec("pathosam:vit_l_histopathology", "vit_l", f"{_OWNCLOUD}/IZgnn1cpBq2PHod/download",
          "b591833c89754271023e901281dee3f2", "pathosam_vit_l_histopathology.pt", "CC-BY-4.0",
          "PathoSAM ViT-L fine-tuned for histopathology (RGB)", channels="rgb"),
    _spec("pathosam:vit_h_histopathology", "vit_h", f"{_OWNCLOUD}/L7AcvVz7DoWJ2RZ/download",
          "bd1856dafc156a43fb3aa705f1a6e92e", "pathosam_vit_h_histopathology.pt", "CC-BY-4.0",
          "PathoSAM ViT-H fine-tuned for histopathology (RGB)", channels="rgb"),
)

# MobileSAM's TinyViT as micro-sam builds it (mobile_sam/build_sam.py build_sam_vit_t).
TINY_ARCHITECTURES: dict[str, TinyVitArchitecture] = {"vit_t": TinyVitArchitecture("vit_t")}


def _tiny_spec(name: str, url: str, xxh128: str, file: str, description: str) -> ExtractorSpec:
    spec = _spec(name, "vit_t", url, xxh128, file, "CC-BY-4.0", description)
    return replace(spec, requires=("torch", "mobile_sam", "timm"), install="vfm-features[musam-tiny]")


# µSAM TinyViT models (micro-sam util.py models(), v1.8.10): the smallest SAM-family encoders, for CPUs.
TINY_SPECS: tuple[ExtractorSpec, ...] = (
    _tiny_spec("musam:vit_t_lm", f"{_EBI}/faithful-chicken/1.1/files/vit_t.pt", "72ec5074774761a6e5c05a08942f981e",
               "musam_vit_t_lm.pt", "µSAM ViT-T (MobileSAM TinyViT, ~6 M parameters) fine-tuned for light microscopy"),
    _tiny_spec("musam:vit_t_em_organelles", f"{_EBI}/greedy-whale/1/files/vit_t.pt",
               "253474720c497cce605e57c9b1d18fd9", "musam_vit_t_em_organelles.pt",
               "µSAM ViT-T (MobileSAM TinyViT, ~6 M parameters) fine-tuned for electron microscopy organelles"),
)
