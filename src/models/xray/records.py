"""The prepared scans as TFRecords: how one is written, how tf.data reads them back, and the split rule.

A record holds the model-size pixels as uint8 (to_model_pixels), the class index and the content
hash; parsing divides by 255, which gives exactly images.to_model_input's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from models.xray.schema import CHANNELS, IMAGE_SIZE

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "validation", "test")


def split_of(sha256: str, *, train: float = 0.8, validation: float = 0.1) -> str:
    """The split of a scan from its content hash: the same image lands in the same split on every run
    and every machine, whatever else arrives, and a duplicate can never sit in two splits."""
    position = int(sha256[:8], 16) / 0x1_0000_0000
    return SPLITS[0] if position < train else SPLITS[1] if position < train + validation else SPLITS[2]


def serialize(pixels: np.ndarray, label: int, sha256: str) -> bytes:
    import tensorflow as tf

    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE) or pixels.dtype != np.uint8:
        raise ValueError(f"expected ({IMAGE_SIZE}, {IMAGE_SIZE}) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "sha256": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sha256.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One serialized record -> ((IMAGE_SIZE, IMAGE_SIZE, 1) float32 in [0, 1], int32 label)."""
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    parsed = tf.io.parse_single_example(record, spec)
    pixels = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), (IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
    return tf.cast(pixels, tf.float32) / 255.0, tf.cast(parsed["label"], tf.int32)


def dataset(
    paths: Sequence[str], *, batch_size: int, shuffle: bool = False, seed: int = 42, repeat: bool = False,
    records: int | None = None,
) -> tf.data.Dataset:
    """Batches of (images, labels) from TFRecord shards: parallel reads and parsing, shuffle, prefetch.

    `records` (the manifest's count) tells Keras the steps per epoch up front; a wrong count fails the read.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    data = tf.data.TFRecordDataset(list(paths), num_parallel_reads=autotune)
    if records is not None:
        data = data.apply(tf.data.experimental.assert_cardinality(records))
    if shuffle:
        data = data.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()
    return data.map(parse, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)


def read_arrays(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All records of the shards as (images [n, S, S, 1] float32, labels [n] int32), in file order."""
    images, labels = [], []
    for x, y in dataset(paths, batch_size=256):
        images.append(x.numpy())
        labels.append(y.numpy())
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(images), np.concatenate(labels)
