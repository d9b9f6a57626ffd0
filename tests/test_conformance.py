"""check_extractor over every built-in extractor family (tiny random networks for the model families)."""

import pytest

from vfm_features.testing import ConformanceError, check_extractor


def test_filters():
    check_extractor("filters", sigmas=[0.5, 1.0, 2.0])


def test_regionprops():
    check_extractor("regionprops")
    check_extractor("regionprops", channels="per_channel")


@pytest.mark.torch
def test_sam_family():
    pytest.importorskip("segment_anything")
    from vfm_features_sam import SamArchitecture

    tiny = SamArchitecture("tiny", embed_dim=16, depth=1, num_heads=2, global_attn_indexes=(0,), img_size=64,
                           window_size=4)
    for name in ("sam:vit_b", "musam:vit_b_lm", "pathosam:vit_b_histopathology"):
        check_extractor(name, architecture=tiny, pretrained=False, device="cpu")


@pytest.mark.torch
def test_sam2():
    pytest.importorskip("sam2")
    from test_sam2 import TINY

    check_extractor("sam2:hiera_t", config=TINY, pretrained=False, device="cpu", input_size=64)


@pytest.mark.torch
def test_dinov3():
    pytest.importorskip("transformers")
    from test_dinov3 import TINY

    check_extractor("dinov3:vits16", config=TINY, pretrained=False, device="cpu", input_size=64)


def test_a_broken_extractor_is_named():
    from vfm_features import Embedding, EmbeddingGeometry, ExtractorSpec, FeatureExtractor

    class WrongCount(FeatureExtractor):
        def n_features_for(self, n_channels):
            return 5

        def _embed_plane(self, plane):
            return Embedding(plane[None, :, :, 0].astype("float32"), EmbeddingGeometry(plane.shape[:2]))

    with pytest.raises(ConformanceError, match="wrong:count fails the check 'n_features_for'"):
        check_extractor(WrongCount(ExtractorSpec("wrong:count", factory=WrongCount)))
