"""The two max-pool forms (custom-VJP first_max for CPU, lax.reduce_window elsewhere) agree.

Tie behaviour, checked on XLA:CPU by test_reduce_window_gradient_on_ties_on_cpu: JAX
differentiates reduce_window max through select-and-scatter with a >= select, which XLA:CPU
scans in row-major window order, so ties go to the first maximum, torch's rule, like
max_pool_first_max. The StableHLO spec leaves the scan order to the backend, so other backends
may route a tie's gradient to another maximum; tie-free inputs agree everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from signlang_jax.models.pooling import (
    max_pool,
    max_pool_first_max,
    max_pool_reduce_window,
    resolve_max_pool_impl,
)

SHAPES = [(2, 9, 7, 3), (1, 8, 8, 2), (2, 5, 6, 1), (1, 4, 4, 1)]  # odd and even H and W


def tie_free(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinct values (a permutation), half of them negative: no window has two maxima, and
    zero padding in place of -inf would change the all-negative border windows."""
    size = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(size) - size // 2
    return values.reshape(shape).astype(np.float32)


def value_and_grad(pool, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward output and the jitted gradient of sum(pool(x) * dy)."""
    y = jax.jit(pool)(jnp.asarray(x))
    dx = jax.jit(jax.grad(lambda v: jnp.sum(pool(v) * dy)))(jnp.asarray(x))
    return np.asarray(y), np.asarray(dx)


@pytest.mark.parametrize("shape", SHAPES)
def test_both_forms_equal_on_tie_free_inputs(shape):
    """Same values and the same gradients, bit for bit, on odd and even sizes."""
    x = tie_free(shape)
    out_shape = (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1, shape[3])
    # Small integer cotangents: the overlapping windows' sums are exact in any order.
    dy = np.random.default_rng(1).integers(-8, 9, out_shape).astype(np.float32)
    y_custom, dx_custom = value_and_grad(max_pool_first_max, x, dy)
    y_window, dx_window = value_and_grad(max_pool_reduce_window, x, dy)
    assert y_custom.shape == out_shape
    np.testing.assert_array_equal(y_custom, y_window)
    np.testing.assert_array_equal(dx_custom, dx_window)
    # The gradient is routed, not spread: every output sends its cotangent to one input.
    assert dx_custom.sum() == dy.sum()
    assert np.count_nonzero(dx_custom) <= np.count_nonzero(dy)


def test_forward_by_hand():
    """A 4x4 ramp: each 3x3/2 window (padding 1) holds its largest element at its far corner."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    want = np.array([[5, 7], [13, 15]], np.float32)
    for pool in (max_pool_first_max, max_pool_reduce_window):
        np.testing.assert_array_equal(np.asarray(pool(jnp.asarray(x)))[0, :, :, 0], want)


def test_reduce_window_gradient_on_ties_on_cpu():
    """XLA:CPU sends a tied window's gradient to its first maximum, as first_max (and torch) do.

    Documents the backend behaviour (see the module docstring); skipped on other backends.
    """
    if jax.default_backend() != "cpu":
        pytest.skip("the tie order is XLA:CPU's; other backends may differ")
    x = np.zeros((1, 4, 4, 1), np.float32)  # every window is all ties
    want = np.zeros((4, 4), np.float32)
    want[:2, :2] = 1.0  # window (i, j) starts at row 2i - 1 (padding): first real element (i, j)
    for pool in (max_pool_first_max, max_pool_reduce_window):
        dx = jax.grad(lambda v, pool=pool: jnp.sum(pool(v)))(jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(dx)[0, :, :, 0], want)
    rng = np.random.default_rng(0)
    relu_like = np.maximum(np.round(rng.normal(size=(2, 9, 7, 3)), 1), 0).astype(np.float32)
    dy = rng.integers(-8, 9, (2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(value_and_grad(max_pool_first_max, relu_like, dy)[1],
                                  value_and_grad(max_pool_reduce_window, relu_like, dy)[1])


def test_selector_picks_first_max_on_cpu_and_reduce_window_elsewhere():
    """The per-backend choice, and max_pool following it (forced branches run on CPU too)."""
    assert resolve_max_pool_impl("auto", backend="cpu") == "first_max"
    assert resolve_max_pool_impl("auto", backend="gpu") == "reduce_window"
    assert resolve_max_pool_impl("auto", backend="tpu") == "reduce_window"
    assert resolve_max_pool_impl("reduce_window", backend="cpu") == "reduce_window"
    if jax.default_backend() == "cpu":
        assert resolve_max_pool_impl() == "first_max"
    with pytest.raises(ValueError, match=r"max pool impl 'fast'.*first_max"):
        resolve_max_pool_impl("fast")
    x = tie_free((1, 6, 6, 2))

    def primitives(impl: str) -> set[str]:
        jaxpr = jax.make_jaxpr(lambda v: max_pool(v, impl=impl))(x)
        return {str(e.primitive) for e in jaxpr.jaxpr.eqns}

    assert primitives("reduce_window") == {"reduce_window_max"}
    (custom,) = primitives("first_max")
    assert custom.startswith("custom_vjp_call")
    auto = "first_max" if jax.default_backend() == "cpu" else "reduce_window"
    assert primitives("auto") == primitives(auto)
