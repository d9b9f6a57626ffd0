import numpy as np
import pytest

from vfm_features import InputError, ObjectClassifier
from vfm_features.evaluation.metrics import macro_f1
from vfm_features.classifiers.object import majority_vote


def test_majority_vote():
    inst = np.array([[1, 1, 1, 0], [2, 2, 3, 3]])
    cls = np.array([[2, 2, 1, 1], [0, 0, 4, 4]])
    assert majority_vote(inst, cls) == {1: 2, 3: 4}


@pytest.mark.parametrize("extractor,kwargs", [("regionprops", {}), ("filters", {"stats": ("mean", "std")})])
def test_learns_cell_types(small_data, extractor, kwargs):
    train, test = small_data[:2], small_data[2]
    clf = ObjectClassifier(extractor, head_options={"n_estimators": 50}, **kwargs)
    clf.fit([d.image for d in train], [d.instances for d in train], [d.object_classes for d in train])
    pred = clf.predict(test.image, test.instances)
    truth = [test.object_classes[i] for i in pred.ids]
    assert macro_f1(truth, pred.classes, ignore=None) > 0.6  # chance is about 0.33
    # the class image paints each object with its predicted class
    some = pred.ids[0]
    assert np.all(pred.class_image[test.instances == some] == pred.as_dict()[some])
    assert np.all(pred.class_image[test.instances == 0] == 0)
    assert pred.probabilities.shape == (len(pred.ids), 3)


def test_class_image_labels_equal_mapping(small_data):
    d = small_data[0]
    class_image = np.zeros_like(d.instances)
    for oid, c in d.object_classes.items():
        class_image[d.instances == oid] = c
    a = ObjectClassifier(head_options={"n_estimators": 10}).fit(d.image, d.instances, d.object_classes)
    b = ObjectClassifier(head_options={"n_estimators": 10}).fit(d.image, d.instances, class_image)
    np.testing.assert_array_equal(a.predict(d.image, d.instances).classes, b.predict(d.image, d.instances).classes)


def test_budget_and_partial_fit(small_data):
    d = small_data[0]
    clf = ObjectClassifier(head_options={"n_estimators": 10}, budget=4).fit(d.image, d.instances, d.object_classes)
    assert clf.n_training_objects_ == 4
    clf.partial_fit(small_data[1].image, small_data[1].instances, small_data[1].object_classes)
    assert clf.n_training_objects_ == 4
    clf.set_params(budget=None).partial_fit(small_data[1].image, small_data[1].instances, small_data[1].object_classes)
    assert clf.n_training_objects_ > 4


def test_bad_object_input(small_data):
    d = small_data[0]
    clf = ObjectClassifier(head_options={"n_estimators": 5})
    with pytest.raises(InputError, match="not in the instance mask"):
        clf.fit(d.image, d.instances, {9999: 1, 1: 2})
    with pytest.raises(InputError, match="negative"):
        clf.fit(d.image, -d.instances, d.object_classes)
    with pytest.raises(InputError, match="only class"):
        clf.fit(d.image, d.instances, {1: 1, 2: 1})
    with pytest.raises(InputError, match="one mask"):
        clf.fit([d.image, d.image], [d.instances], [d.object_classes])
    fitted = ObjectClassifier(head_options={"n_estimators": 5}).fit(d.image, d.instances, d.object_classes)
    empty = fitted.predict(d.image, np.zeros_like(d.instances))
    assert len(empty.ids) == 0 and not empty.class_image.any()
