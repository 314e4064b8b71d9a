"""The device a training task runs on, recorded as an MLflow tag, and the `require_gpu` check before training."""

from __future__ import annotations

from collections.abc import Sequence

# MLflow run tag: "GPU:0 (<name>)" or "CPU".
DEVICE_TAG = "sluice.device"


class GpuUnavailable(RuntimeError):
    """`require_gpu` is on and TensorFlow sees no GPU."""


def describe_device(gpu_names: Sequence[str]) -> str:
    """The tag value for the GPUs TensorFlow sees, in its order: Keras places a model on the first."""
    if not gpu_names:
        return "CPU"
    others = f", {len(gpu_names)} GPUs visible" if len(gpu_names) > 1 else ""
    return f"GPU:0 ({gpu_names[0]}{others})"


def visible_gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees (`tf.config.list_physical_devices('GPU')`), e.g. "NVIDIA A10"."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name") or gpu.name)
    return names


def training_device(*, require_gpu: bool) -> str:
    """The device training will use (see describe_device); raises GpuUnavailable when a GPU is required and
    none is visible, so the task fails in seconds instead of training on CPU for hours."""
    device = describe_device(visible_gpu_names())
    if require_gpu and device == "CPU":
        import tensorflow as tf

        build = (
            "this TensorFlow build has CUDA support, so the container sees no GPU device (node without a GPU, "
            "missing nvidia.com/gpu limit or driver)"
            if tf.test.is_built_with_cuda()
            else f"this TensorFlow build ({tf.__version__}) has no CUDA support (a CPU-only image or tensorflow-cpu)"
        )
        raise GpuUnavailable(
            "require_gpu is on but TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty): "
            f"{build}. Check the train task's pod settings in variables/<env>/airflow_pod_overrides.json and its "
            "image, or set the Airflow Variable require_gpu to false to train on CPU."
        )
    return device
