"""Building blocks shared by the backbones and the head, with torch-equivalent conventions.

Everything here mirrors a torch layer one-to-one (same padding, same initialisation, same
BatchNorm momentum/epsilon) so that a torch twin with the same state_dict computes the same
function. The one piece of real work is the stride-2 transposed convolution of the head.

Transposed-convolution parameter convention (the one home of this fact):
    `ConvTranspose.kernel` has shape (kh, kw, Cin, Cout) with
    `kernel[a, b, i, o] = W_torch[i, o, a, b]`, where `W_torch` (Cin, Cout, kh, kw) is the weight
    of `torch.nn.ConvTranspose2d(Cin, Cout, k, stride=2, padding=p, output_padding=op,
    bias=False)`, i.e. `kernel = W_torch.transpose(2, 3, 0, 1)`; the layer computes exactly
    `torch.nn.functional.conv_transpose2d(x, W_torch, stride=2, padding=p, output_padding=op)`
    in NHWC. (p, op) follow MMPose's `_get_deconv_cfg`: k=4 -> (1, 0), k=3 -> (1, 1),
    k=2 -> (0, 0); all three double the spatial size exactly.

Why sub-pixel: XLA:CPU's transposed-convolution backward pass is ~50x slower than torch
(jax-ml/jax#23783). A stride-2 transposed conv is four ordinary stride-1 convolutions, one per
output phase (even/odd row x even/odd column), whose outputs interleave by depth-to-space. With
`T x T` input windows (T = 2 for k = 4) all four phases read the same windows, so the whole layer
is one im2col matmul (N * P * P, T*T*Cin) @ (T*T*Cin, 4*Cout) followed by slicing: matmul-shaped
work that XLA:CPU runs at full speed in both directions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# torch's kaiming_normal_(mode="fan_out", nonlinearity="relu"): an untruncated normal.
KAIMING_FAN_OUT = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch BatchNorm2d defaults: new_running = 0.9 * old + 0.1 * batch (flax momentum 0.9), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# SimpleBaseline/MMPose: transposed-conv weights Normal(std=0.001).
DECONV_INIT = jax.nn.initializers.normal(0.001)

DECONV_IMPLS = ("subpixel_matmul", "subpixel_conv", "lax")
# MMPose's _get_deconv_cfg: kernel -> (padding, output_padding) giving an output of exactly 2H.
DECONV_PADDING: dict[int, tuple[int, int]] = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class Sequential(nnx.List):
    """An nnx.List that applies its items in order; state paths are `name.0`, `name.1`, ...

    Unlike `nnx.Sequential` (whose paths are `name.layers.0`), the paths match torch's
    `nn.Sequential` state_dict keys.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply every item to x in order."""
        for layer in self:
            x = layer(x)
        return x


class ReLU(nnx.Module):
    """Parameter-free ReLU; a module so that Sequential indices line up with torch."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return max(x, 0)."""
        return jax.nn.relu(x)


class Hardswish(nnx.Module):
    """Parameter-free hard swish x * relu6(x + 3) / 6 (torch.nn.Hardswish)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return x * relu6(x + 3) / 6."""
        return jax.nn.hard_swish(x)


def conv2d(in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs,
           stride: int = 1, groups: int = 1, use_bias: bool = False, dtype: jnp.dtype = jnp.float32,
           kernel_init: nnx.Initializer = KAIMING_FAN_OUT) -> nnx.Conv:
    """A torch-style Conv2d: symmetric padding (k - 1) // 2, kaiming fan_out init, HWIO kernel."""
    # Explicit symmetric padding: flax's "SAME" pads (0, 1) at stride 2 on even sizes, torch (1, 1).
    pad = (kernel_size - 1) // 2
    return nnx.Conv(
        in_features, out_features, (kernel_size, kernel_size), strides=(stride, stride),
        padding=((pad, pad), (pad, pad)), feature_group_count=groups, use_bias=use_bias,
        dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init, rngs=rngs,
    )


def batch_norm(num_features: int, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32,
               momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON) -> nnx.BatchNorm:
    """BatchNorm with torch's defaults; params and statistics stay float32 under any dtype.

    Matmul statistics (see `BatchNorm`) for float32 compute on CPU, flax's reductions elsewhere.
    """
    return BatchNorm(num_features, momentum=momentum, epsilon=epsilon, dtype=dtype,
                     param_dtype=jnp.float32, rngs=rngs,
                     matmul_stats=jax.default_backend() == "cpu" and dtype == jnp.float32)


def _channel_sums(*arrays: jax.Array) -> list[jax.Array]:
    """Per-channel sums over every leading axis, each as one (M,) @ (M, C) matmul."""
    sums = []
    for a in arrays:
        rows = a.reshape(-1, a.shape[-1])
        sums.append(jnp.ones((rows.shape[0],), rows.dtype) @ rows)
    return sums


def _batch_norm_fwd(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
                    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], tuple]:
    n = x.size // x.shape[-1]
    total, total_sq = _channel_sums(x, x * x)
    mean = total / n
    var = jnp.maximum(total_sq / n - mean * mean, 0.0)  # flax's "fast variance", biased
    inv_std = jax.lax.rsqrt(var + epsilon)
    y = (x - mean) * (scale * inv_std) + bias
    return (y, mean, var), (x, mean, inv_std, scale)


def _batch_norm_bwd(epsilon: float, residual: tuple, cotangents: tuple
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    # The statistics only feed the running averages (under stop_gradient): their cotangents
    # are zero and ignored.
    dy = cotangents[0]
    x, mean, inv_std, scale = residual
    n = x.size // x.shape[-1]
    x_hat = (x - mean) * inv_std
    d_bias, d_scale = _channel_sums(dy, dy * x_hat)
    dx = (scale * inv_std / n) * (n * dy - d_bias - x_hat * d_scale)
    return dx, d_scale, d_bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BatchNorm over all axes but the last: (y, batch mean, biased batch var).

    Same function as flax's BatchNorm in training mode, written so that the four per-channel
    reductions (two forward, two backward) are matmuls with a ones vector: XLA:CPU's column
    reductions were ~25 % of the demo step's traced time, its matmuls are fast.
    """
    return _batch_norm_fwd(x, scale, bias, epsilon)[0]


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm (same variables and semantics) whose training mode can use matmul stats.

    With `matmul_stats` (chosen on CPU by `batch_norm`), training-mode calls go through
    `batch_norm_train`: 9.5 % faster per 512x512 train step and 2.5 % at the demo size here
    (docs/PERFORMANCE.md). Evaluation, masks and other axes use flax's implementation.
    """

    def __init__(self, num_features: int, *, matmul_stats: bool = False, **kwargs: object) -> None:
        super().__init__(num_features, **kwargs)
        self.matmul_stats = matmul_stats

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        """Normalise x (N, ..., C) with batch statistics (training) or running ones (eval)."""
        use_running = (self.use_running_average if use_running_average is None
                       else use_running_average)
        if not self.matmul_stats or use_running or mask is not None or self.axis not in (
                -1, x.ndim - 1):
            return super().__call__(x, use_running_average=use_running_average, mask=mask)
        y, mean, var = batch_norm_train(x.astype(jnp.float32), self.scale[...], self.bias[...],
                                        self.epsilon)
        mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
        self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        return y.astype(self.dtype or x.dtype)


# XLA:CPU (jax 0.10) hands convolutions to YNNPACK by default. For this model's shapes XLA's own
# (Eigen) convolutions are 1.5-4x faster, e.g. the 7x7 Cin=3 stem at N16 128x128: 47 ms YNNPACK,
# 12 ms Eigen (benchmarks/bench_suite.py). Dots, where YNNPACK is good, keep it.
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


@functools.cache
def xla_compiler_options() -> dict[str, str]:
    """Compiler options for `jax.jit(..., compiler_options=...)` on this backend.

    CPU_COMPILER_OPTIONS on CPU when the installed jaxlib accepts them (probed once: the option
    is experimental and may be renamed), else none. GPUs and TPUs keep their defaults (cuDNN).
    """
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:
        return {}
    return dict(CPU_COMPILER_OPTIONS)


def resolve_deconv_impl(name: str) -> str:
    """Map "auto" to a sub-pixel form on CPU and lax (cuDNN/TPU transposed conv) elsewhere.

    On CPU: subpixel_conv when XLA's own convolutions are on (xla_compiler_options), ~5% faster
    per train step than subpixel_matmul there; subpixel_matmul when YNNPACK runs convolutions.
    """
    if name == "auto":
        if jax.default_backend() != "cpu":
            return "lax"
        return "subpixel_conv" if xla_compiler_options() else "subpixel_matmul"
    if name not in DECONV_IMPLS:
        raise ValueError(f"model.deconv_impl={name!r}: expected 'auto' or one of {DECONV_IMPLS}")
    return name


def deconv_padding(kernel_size: int) -> tuple[int, int]:
    """(padding, output_padding) of torch's ConvTranspose2d(stride=2) for a supported kernel."""
    if kernel_size not in DECONV_PADDING:
        raise ValueError(f"model.deconv_kernel={kernel_size}: supported transposed-conv kernels "
                         f"are {sorted(DECONV_PADDING)} (MMPose's _get_deconv_cfg)")
    return DECONV_PADDING[kernel_size]


@functools.cache
def _subpixel_plan(kernel_size: int, padding: int) -> tuple[int, int, int, tuple[int, int],
                                                            np.ndarray]:
    """Static geometry of the sub-pixel form of a stride-2 transposed conv (one spatial axis).

    Output o = 2m + r receives x[i] * w[a] for o = 2i - padding + a, so phase r uses taps
    a = (r + padding) % 2 + 2j at input i = m + (r + padding) // 2 - j. Each phase reads a window
    of T consecutive inputs starting at m + start[r]; tap[r, t] is the kernel tap applied to the
    t-th input of that window (kernel_size = a zero tap, for phases with fewer than T taps).

    Returns (T, pad_lo, pad_hi, (offset_0, offset_1), tap) where the input is padded by
    (pad_lo, pad_hi), windows are taken at every position of the padded input, and phase r keeps
    the H windows starting at offset_r.
    """
    phase_taps = []  # per phase: list of (input offset relative to m, kernel tap)
    for r in (0, 1):
        q = r + padding
        phase_taps.append([(q // 2 - j, q % 2 + 2 * j)
                           for j in range(kernel_size) if q % 2 + 2 * j < kernel_size])
    window = max(len(taps) for taps in phase_taps)
    starts = [min(d for d, _ in taps) for taps in phase_taps]
    tap = np.full((2, window), kernel_size, dtype=np.int32)
    for r, taps in enumerate(phase_taps):
        for d, a in taps:
            tap[r, d - starts[r]] = a
    pad_lo = -min(starts)
    pad_hi = max(starts) + window - 1
    offsets = (starts[0] - min(starts), starts[1] - min(starts))
    return window, pad_lo, pad_hi, offsets, tap


def _subpixel_weight(kernel: jax.Array, tap: np.ndarray) -> jax.Array:
    """Gather the (T, T, Cin, 2 * 2 * Cout) sub-pixel weight from a (k, k, Cin, Cout) kernel."""
    # One extra all-zero tap (index k) for window positions a phase does not use.
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    ty = tap.T[:, None, :, None]  # (T, 1, 2, 1): window row t, phase row ry
    tx = tap.T[None, :, None, :]  # (1, T, 1, 2): window col t, phase col rx
    blocks = padded[ty, tx]  # (T, T, 2, 2, Cin, Cout)
    window, cin, cout = blocks.shape[0], blocks.shape[4], blocks.shape[5]
    return blocks.transpose(0, 1, 4, 2, 3, 5).reshape(window, window, cin, 4 * cout)


def conv_transpose(x: jax.Array, kernel: jax.Array, *, padding: int, output_padding: int,
                   impl: str) -> jax.Array:
    """torch's conv_transpose2d(stride=2) in NHWC: x (N, H, W, Cin) -> (N, Ho, Wo, Cout).

    kernel is (k, k, Cin, Cout) with kernel[a, b, i, o] = W_torch[i, o, a, b]. The sub-pixel impls
    require an output of exactly (2H, 2W), true for every entry of DECONV_PADDING.
    """
    k = kernel.shape[0]
    if impl == "lax":
        # conv_transpose dilates the input and correlates with the flipped kernel; torch's
        # padding p crops p from each side of the full (k - 1) padding, op adds rows at the end.
        pads = [(k - 1 - padding, k - 1 - padding + output_padding)] * 2
        # transpose_kernel=True flips spatially and swaps I/O: pass the kernel as (k, k, Cout, Cin).
        return jax.lax.conv_transpose(x, kernel.swapaxes(2, 3), (2, 2), pads,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      transpose_kernel=True)
    if impl not in ("subpixel_matmul", "subpixel_conv"):
        raise ValueError(f"unknown transposed-conv impl {impl!r}; expected one of {DECONV_IMPLS}")
    if 2 * padding - output_padding != k - 2:
        raise ValueError(f"sub-pixel transposed conv needs an output of exactly 2x the input; "
                         f"kernel {k}, padding {padding}, output_padding {output_padding} is not; "
                         f"use impl='lax'")
    n, h, w, cin = x.shape
    cout = kernel.shape[3]
    window, pad_lo, pad_hi, offsets, tap = _subpixel_plan(k, padding)
    weight = _subpixel_weight(kernel, tap)  # (T, T, Cin, 4 * Cout), column order (ry, rx, o)
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype),
                     ((0, 0, 0), (pad_lo, pad_hi, 0), (pad_lo, pad_hi, 0), (0, 0, 0)))
    ph = xp.shape[1] - window + 1  # number of window positions per axis
    pw = xp.shape[2] - window + 1
    if impl == "subpixel_conv":
        y = jax.lax.conv_general_dilated(xp, weight, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
        # im2col: the T*T shifted views side by side in channels, ordered (t_row, t_col, Cin)
        # like the rows of the weight matrix.
        cols = jnp.concatenate([xp[:, ty:ty + ph, tx:tx + pw, :]
                                for ty in range(window) for tx in range(window)], axis=-1)
        y = cols @ weight.reshape(window * window * cin, 4 * cout)
    y = y.reshape(n, ph, pw, 2, 2, cout)
    # Depth-to-space: out[:, 2m + ry, 2n + rx] = phase (ry, rx) at window (m + off_ry, n + off_rx).
    rows = []
    for ry in (0, 1):
        oy = offsets[ry]
        rows.append(jnp.stack([y[:, oy:oy + h, offsets[rx]:offsets[rx] + w, ry, rx, :]
                               for rx in (0, 1)], axis=3))  # (N, H, W, 2, C)
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)


class ConvTranspose(nnx.Module):
    """torch ConvTranspose2d(stride=2, bias=False) with MMPose's padding; see the module docstring.

    Attributes: kernel (nnx.Param, (k, k, Cin, Cout)), kernel_size, padding, output_padding,
    impl, dtype.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs,
                 impl: str = "auto", dtype: jnp.dtype = jnp.float32,
                 kernel_init: nnx.Initializer = DECONV_INIT) -> None:
        self.kernel_size = kernel_size
        self.padding, self.output_padding = deconv_padding(kernel_size)
        self.impl = resolve_deconv_impl(impl)
        self.dtype = dtype
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, 2H, 2W, Cout), computed in self.dtype."""
        return conv_transpose(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                              padding=self.padding, output_padding=self.output_padding,
                              impl=self.impl)


# ----------------------------------------------------------------------------- max pooling
