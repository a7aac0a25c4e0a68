"""What a model costs per face, and the CPU a timing was taken on.

:func:`count_macs` counts the multiply-accumulate operations (MACs) of one forward pass of a
Keras model on one face, the unit the model card and ``ml.benchmark`` use. Only the layers that
do the work are counted: ``Conv2D`` (``H_out * W_out * k_h * k_w * C_in / groups * C_out``),
``DepthwiseConv2D`` (``H_out * W_out * k_h * k_w * C_in * depth_multiplier``) and ``Dense``
(``prod(leading dims) * C_in * C_out``). Batch norm (folded into the convolutions by the LiteRT
converter), activations, pooling and resizing are left out, as in the MobileNet and EfficientNet
papers' "multiply-adds". A nested model (the test-time-augmentation wrapper of
:mod:`ml.models.tta` calls the classifier once per view) is counted once per call.

:func:`cpu_description` names the CPU and the vector instruction sets that decide how fast a
convolution runs (AVX2, AVX-512, AMX), so a timing is never read without its machine.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _layer_macs(layer) -> int:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, h, w, _ = _shape(layer.output)
        kh, kw = layer.kernel_size
        c_in = _shape(layer.input)[-1]
        return int(h * w * kh * kw * c_in * layer.depth_multiplier)
    if isinstance(layer, keras.layers.Conv2D):  # SeparableConv2D is not used by our models
        _, h, w, c_out = _shape(layer.output)
        kh, kw = layer.kernel_size
        c_in = _shape(layer.input)[-1]
        return int(h * w * kh * kw * (c_in // layer.groups) * c_out)
    if isinstance(layer, keras.layers.Dense):
        in_shape = _shape(layer.input)
        lead = math.prod(int(d) for d in in_shape[1:-1])
        return int(lead * in_shape[-1] * layer.units)
    return 0


def count_macs(model) -> int:
    """Multiply-accumulate operations of one forward pass on one face.

    Args:
        model: a built ``keras.Model`` with a fixed input size (batch dimension ``None``).

    Returns:
        MACs per face (an ``int`` >= 0); for the shipped width-0.75 CNN with 3 test-time views,
        about 790 M.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            calls = max(1, len(getattr(layer, "_inbound_nodes", [])))
            total += calls * count_macs(layer)
        else:
            calls = max(1, len(getattr(layer, "_inbound_nodes", [])))
            total += calls * _layer_macs(layer)
    return total


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (empty elsewhere)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def instruction_sets(flags: set[str]) -> list[str]:
    """The vector extensions that matter for inference speed, from the CPU flags.

    Returns:
        A subset of ``["AVX2", "AVX-512", "AVX-512 VNNI", "AVX-512 BF16", "AMX"]`` in that
        order (``AMX`` when any of ``amx_tile``, ``amx_bf16``, ``amx_int8`` is present).
    """
    names = []
    if "avx2" in flags:
        names.append("AVX2")
    if "avx512f" in flags:
        names.append("AVX-512")
    if "avx512_vnni" in flags:
        names.append("AVX-512 VNNI")
    if "avx512_bf16" in flags:
        names.append("AVX-512 BF16")
    if flags & {"amx_tile", "amx_bf16", "amx_int8"}:
        names.append("AMX")
    return names


def cpu_description(cpuinfo: str | None = None) -> str:
    """One line naming the CPU, its core count and its vector instruction sets.

    Example: ``"AMD EPYC, 2 cores, x86_64, AVX2 AVX-512 AVX-512 VNNI AVX-512 BF16, no AMX"``.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read from the machine when ``None``).
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    model = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    sets = instruction_sets(cpu_flags(cpuinfo))
    amx = "AMX" in sets
    vector = " ".join(s for s in sets if s != "AMX") or "no AVX2"
    return (
        f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores, "
        f"{platform.machine()}, {vector}, {'AMX' if amx else 'no AMX'}"
    )


__all__ = ["count_macs", "cpu_description", "cpu_flags", "instruction_sets"]
