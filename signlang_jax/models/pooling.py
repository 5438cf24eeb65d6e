"""Max pooling as torch's MaxPool2d (square window, -inf padding), NHWC, chosen per backend.

`max_pool` is what the models call: on CPU the custom-VJP `max_pool_first_max` (XLA:CPU's
reduce-window gradient cost ~50 ms of a 270 ms demo step), elsewhere `lax.reduce_window`, what
flax and cuDNN use. Both give the same values; see each function for the gradient on ties.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _pool_views(x: jax.Array, window: int, stride: int, padding: int) -> list[jax.Array]:
    """The window*window strided views of the -inf-padded input, in torch's scan order."""
    n, h, w, c = x.shape
    oh = (h + 2 * padding - window) // stride + 1
    ow = (w + 2 * padding - window) // stride + 1
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                 constant_values=-jnp.inf)
    return [xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            for i in range(window) for j in range(window)]


MAX_POOL_IMPLS = ("first_max", "reduce_window")


def resolve_max_pool_impl(name: str = "auto", backend: str | None = None) -> str:
    """Map "auto" to "first_max" on CPU and "reduce_window" elsewhere (backend: default JAX's).

    Same output either way. first_max exists for XLA:CPU's slow reduce-window gradient; GPUs
    and TPUs run reduce_window natively (what flax's max_pool and torch on GPU use).
    """
    if name == "auto":
        return "first_max" if (backend or jax.default_backend()) == "cpu" else "reduce_window"
    if name not in MAX_POOL_IMPLS:
        raise ValueError(f"max pool impl {name!r}: expected 'auto' or one of {MAX_POOL_IMPLS}")
    return name


def max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1, *,
             impl: str = "auto") -> jax.Array:
    """torch's max_pool2d (square window, -inf padding) in NHWC: (N, H, W, C) -> (N, Ho, Wo, C).

    impl: "auto" (resolve_max_pool_impl for the default backend, decided when traced),
    "first_max" (max_pool_first_max) or "reduce_window" (max_pool_reduce_window).
    """
    if resolve_max_pool_impl(impl) == "first_max":
        return max_pool_first_max(x, window, stride, padding)
    return max_pool_reduce_window(x, window, stride, padding)


def max_pool_reduce_window(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1
                           ) -> jax.Array:
    """max_pool as one `lax.reduce_window` max with -inf padding (flax's nnx.max_pool form).

    Its gradient (XLA's select-and-scatter with a >= select) goes to the first maximal element
    of each window in row-major order, torch's rule, on XLA:CPU (tests/test_maxpool.py). XLA
    does not promise a scan order, so on other backends ties may route differently; tie-free
    inputs get identical gradients everywhere.
    """
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1),
        (1, stride, stride, 1), ((0, 0), (padding, padding), (padding, padding), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool_first_max(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1
                       ) -> jax.Array:
    """max_pool with a hand-written gradient to the first maximum of each window (CPU form).

    Why not `lax.reduce_window` on CPU: its gradient on XLA:CPU (a variadic reduce-window
    carrying argmax indices, then select-and-scatter) took ~50 ms of a 270 ms demo step. Here
    the forward is a running maximum over window*window strided views (one fused elementwise
    loop) and the backward routes each output gradient to the FIRST maximal element of its
    window, as torch does (jnp.max's own gradient would split it between ties, which are
    common after a ReLU).
    """
    return functools.reduce(jnp.maximum, _pool_views(x, window, stride, padding))


def _max_pool_fwd(x: jax.Array, window: int, stride: int, padding: int
                  ) -> tuple[jax.Array, tuple[jax.Array, tuple[int, ...]]]:
    views = _pool_views(x, window, stride, padding)
    best, argmax = views[0], jnp.zeros(views[0].shape, jnp.int8)
    for t, view in enumerate(views[1:], start=1):
        # Strict: ties keep the earlier element. A NaN wins and then stays (NaN > v is False),
        # so `best` equals the forward's jnp.maximum chain, NaNs included, as in torch.
        greater = (view > best) | jnp.isnan(view)
        best = jnp.where(greater, view, best)
        argmax = jnp.where(greater, jnp.int8(t), argmax)
    return best, (argmax, x.shape)  # int8 indices: the residual is a quarter of the output


def _max_pool_bwd(window: int, stride: int, padding: int,
                  residual: tuple[jax.Array, tuple[int, ...]], dy: jax.Array
                  ) -> tuple[jax.Array]:
    argmax, shape = residual
    n, h, w, c = shape
    oh, ow = dy.shape[1], dy.shape[2]
    hp, wp = h + 2 * padding, w + 2 * padding
    zero = jnp.zeros((), dy.dtype)
    dx = jnp.zeros((n, hp, wp, c), dy.dtype)
    for t in range(window * window):
        i, j = divmod(t, window)
        routed = jnp.where(argmax == t, dy, zero)
        # Scatter the strided view back: tap (i, j) of output o sits at padded row i + stride*o.
        dx = dx + jax.lax.pad(routed, zero, ((0, 0, 0), (i, hp - i - stride * (oh - 1) - 1,
                                                          stride - 1),
                                             (j, wp - j - stride * (ow - 1) - 1, stride - 1),
                                             (0, 0, 0)))
    return (dx[:, padding:padding + h, padding:padding + w, :],)


max_pool_first_max.defvjp(_max_pool_fwd, _max_pool_bwd)
