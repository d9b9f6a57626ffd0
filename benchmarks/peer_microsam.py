"""Run by the micro-sam interpreter (a separate virtual environment): time micro-sam's per-object features.

    PEER_PYTHON benchmarks/peer_microsam.py EMBEDDING.npy MASK.npy REPEATS OUT.npy

EMBEDDING is (256, h, w) float32 as SAM writes it for the whole image, MASK the
instance mask of the image. Prints one JSON line: micro-sam's version and the
seconds of each call of ``micro_sam.object_classification.compute_object_features``
(imports excluded); saves the features of the last call to OUT (ids, then area
and means per row).
"""

import json
import sys
import time

import numpy as np


def main() -> None:
    import micro_sam
    from micro_sam.object_classification import compute_object_features

    emb_path, mask_path, repeats, out_path = sys.argv[1:5]
    embedding = np.load(emb_path)
    mask = np.load(mask_path)
    # micro-sam's embedding dict for an untiled 2D image: features (1, C, h, w) and the model input size
    longest = 1024
    scale = longest / max(mask.shape)
    image_embeddings = {"features": embedding[None], "input_size": tuple(round(s * scale) for s in mask.shape),
                        "original_size": mask.shape}
    times = []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        ids, feats = compute_object_features(image_embeddings, mask, verbose=False)
        times.append(time.perf_counter() - t0)
    np.save(out_path, np.concatenate([np.asarray(ids, np.float64)[:, None], feats], axis=1))
    print(json.dumps({"version": micro_sam.__version__, "times": times}))


if __name__ == "__main__":
    main()
