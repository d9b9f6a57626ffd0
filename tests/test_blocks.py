"""Block prediction: stateless, over the tile plan, equal to the whole-image prediction for local extractors."""

import numpy as np
import pytest

from vfm_features import InputError, ObjectClassifier, PixelClassifier, plan_blocks, predict_block, predict_blockwise


@pytest.fixture(scope="module")
def clf(small_data):
    d = small_data[0]
    return PixelClassifier("filters", extractor_options={"sigmas": [0.5, 1.0, 2.0]},
                           head_options={"n_estimators": 5}).fit(d.image, d.scribbles(0.03, random_state=0))


def test_blocks_cover_the_image_once():
    tiles = plan_blocks((100, 130), 48, 8)
    cover = np.zeros((100, 130), int)
    for t in tiles:
        (y0, y1), (x0, x1) = t.core
        cover[y0:y1, x0:x1] += 1
        assert t.slices[0].start <= y0 and t.slices[0].stop >= y1
    assert (cover == 1).all() and len(tiles) > 4


def test_blockwise_equals_whole_image(clf, small_data):
    image = small_data[1].image
    whole = clf.predict_proba(image)
    blocks = predict_blockwise(clf, image, block_shape=48)  # halo defaults to the extractor's
    np.testing.assert_array_equal(blocks, whole)


def test_a_block_needs_only_itself(clf, small_data):
    image = small_data[1].image
    whole = clf.predict_proba(image)
    halo = 9  # the filter kernels' reach at sigma 2
    block = image[20 - halo:60 + halo, 10 - halo:50 + halo]
    proba = predict_block(clf, block, (slice(halo, halo + 40), slice(halo, halo + 40)))
    np.testing.assert_array_equal(proba, whole[:, 20:60, 10:50])


def test_object_classifiers_are_refused(small_data):
    d = small_data[0]
    obj = ObjectClassifier(head_options={"n_estimators": 2}).fit(d.image, d.instances, d.object_classes)
    with pytest.raises(InputError, match="objects"):
        predict_block(obj, d.image)
