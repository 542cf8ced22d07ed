"""convlens.ops.arithmetic against PyTorch autograd: values and gradients of every operand,
with numbers on either side and arrays that broadcast."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convlens.ops import arithmetic  # noqa: E402

TORCH = {"add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "divide": torch.div}
CASES = {  # operand shapes; None for a number
    "tensor_tensor": ((2, 3, 4), (2, 3, 4)),
    "broadcast": ((2, 3, 4), (2, 1, 4)),
    "rank_broadcast": ((2, 3, 4), (4,)),
    "tensor_number": ((2, 3, 4), None),
    "number_tensor": (None, (2, 3, 4)),
}


def _operand(shape, rng):
    if shape is None:
        return 0.75
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(np.float32)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", arithmetic.BINARY)
def test_binary_values_and_gradients_equal_torch(name, case):
    rng = np.random.default_rng(0)
    a, b = (_operand(shape, rng) for shape in CASES[case])
    y, cache = arithmetic.binary_forward(name, a, b)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grads = arithmetic.binary_backward(grad_y, cache)

    leaves = [torch.tensor(v, requires_grad=True) if isinstance(v, np.ndarray) else v
              for v in (a, b)]
    expected = TORCH[name](*leaves)
    expected.backward(torch.from_numpy(grad_y))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-6)
    for grad, leaf in zip(grads, leaves):
        if isinstance(leaf, float):
            assert grad is None
        else:
            assert grad.shape == tuple(leaf.shape)
            np.testing.assert_allclose(grad, leaf.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_negative_and_its_gradient_equal_torch():
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    y, cache = arithmetic.negative_forward(x)
    leaf = torch.tensor(x, requires_grad=True)
    torch.neg(leaf).backward(torch.ones(3, 5))
    np.testing.assert_array_equal(y, -leaf.detach().numpy())
    np.testing.assert_array_equal(arithmetic.negative_backward(np.ones((3, 5), np.float32)),
                                  leaf.grad.numpy())


def test_shapes_that_do_not_broadcast_and_unknown_operations_are_refused():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\) do not broadcast"):
        arithmetic.binary_forward("add", np.ones((2, 3), np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="Unknown arithmetic operation 'power'"):
        arithmetic.binary_forward("power", np.ones(2, np.float32), 2.0)
    with pytest.raises(TypeError, match="at least one array"):
        arithmetic.binary_forward("add", 1.0, 2.0)
