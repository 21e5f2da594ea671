import pytest
import torch

from stair_pyg.nn import cpu_kernel
from stair_pyg.nn.sparse import SparseAdj, csr_mm, spmm

needs_numba = pytest.mark.skipif(not cpu_kernel.numba_available(),
                                 reason="numba is not installed (pip install 'stair-pyg[numba]')")


@pytest.fixture
def restore_choice():
    previous = cpu_kernel.set_cpu_kernel("auto")
    yield
    cpu_kernel.set_cpu_kernel(previous)


def random_csr(rows, cols, density, seed, dtype, index_dtype):
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=gen, dtype=torch.float64)
    dense = dense * (torch.rand(rows, cols, generator=gen) < density)
    if rows > 2:
        dense[rows // 2] = 0.0  # an empty row in the middle
        dense[-1] = 0.0  # and one at the end
    csr = dense.to(dtype).to_sparse_csr()
    csr = torch.sparse_csr_tensor(csr.crow_indices().to(index_dtype),
                                  csr.col_indices().to(index_dtype), csr.values(), csr.shape)
    return csr, dense


@needs_numba
@pytest.mark.parametrize("rows,cols,channels", [(1, 1, 1), (13, 29, 7), (200, 150, 64),
                                                (300, 40, 3), (5, 9, 0), (31, 17, 16),
                                                (40, 50, 91), (23, 20, 130)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_product_matches_dense_float64(rows, cols, channels, dtype, index_dtype, threads,
                                             restore_choice):
    adj, dense = random_csr(rows, cols, 0.2, rows + cols, dtype, index_dtype)
    x = torch.randn(cols, channels, generator=torch.Generator().manual_seed(1), dtype=dtype)
    cpu_kernel.set_cpu_kernel("numba")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = csr_mm(adj, x)
    finally:
        torch.set_num_threads(before)
    expected = dense @ x.double()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and out.shape == (rows, channels)
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    if rows > 2:
        assert torch.all(out[rows // 2] == 0) and torch.all(out[-1] == 0)


@needs_numba
def test_numba_product_ignores_the_memory_it_writes_into_and_non_contiguous_input(
        restore_choice):
    adj, dense = random_csr(60, 60, 0.1, 3, torch.float32, torch.int32)
    x = torch.randn(64, 60).t()  # non-contiguous [60, 64]
    cpu_kernel.set_cpu_kernel("numba")
    for _ in range(3):  # fresh outputs come from reused (uninitialised) memory
        garbage = torch.full((60, 64), float("nan"))
        del garbage
        out = csr_mm(adj, x)
        torch.testing.assert_close(out.double(), dense @ x.double(), rtol=1e-5, atol=1e-5)


@needs_numba
def test_numba_and_torch_products_give_the_same_gradient(restore_choice):
    adj, dense = random_csr(80, 80, 0.1, 5, torch.float32, torch.int32)
    sparse = SparseAdj(adj)
    grads = {}
    for name in ("torch", "numba"):
        cpu_kernel.set_cpu_kernel(name)
        x = torch.randn(80, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
        (spmm(sparse, spmm(sparse, x)) ** 2).sum().backward()
        grads[name] = x.grad
    x64 = torch.randn(80, 16, generator=torch.Generator().manual_seed(0)).double()
    x64.requires_grad_(True)
    ((dense @ (dense @ x64)) ** 2).sum().backward()
    for grad in grads.values():
        torch.testing.assert_close(grad.double(), x64.grad, rtol=1e-5, atol=1e-5)


def test_automatic_choice_falls_back_to_torch_without_numba(monkeypatch, restore_choice):
    monkeypatch.setattr(cpu_kernel, "_numba_missing", "numba does not import (test)")
    assert cpu_kernel.cpu_kernel() == "torch"
    adj, dense = random_csr(30, 20, 0.3, 7, torch.float32, torch.int32)
    x = torch.randn(20, 5)

    def fail(*args):
        raise AssertionError("the numba kernel must not run without numba")

    monkeypatch.setattr(cpu_kernel, "csr_mm_numba", fail)
    torch.testing.assert_close(csr_mm(adj, x).double(), dense @ x.double(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ImportError, match=r"stair-pyg\[numba\]"):
        cpu_kernel.set_cpu_kernel("numba")


def test_choice_is_validated_and_torch_can_be_forced(restore_choice):
    with pytest.raises(ValueError, match="unknown CPU kernel 'fast'"):
        cpu_kernel.set_cpu_kernel("fast")
    cpu_kernel.set_cpu_kernel("torch")
    assert cpu_kernel.cpu_kernel() == "torch"
    adj, _ = random_csr(10, 10, 0.5, 1, torch.float32, torch.int32)
    assert not cpu_kernel.supports(adj, torch.randn(10, 3))


@needs_numba
def test_kernel_takes_only_what_it_computes(restore_choice):
    cpu_kernel.set_cpu_kernel("numba")
    adj, _ = random_csr(10, 10, 0.5, 1, torch.float32, torch.int32)
    assert cpu_kernel.supports(adj, torch.randn(10, 3))
    assert not cpu_kernel.supports(adj, torch.randn(10, 3, dtype=torch.float64))  # mixed dtypes
    assert not cpu_kernel.supports(adj, torch.randn(10))  # a vector goes to torch
    half = torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(),
                                   adj.values().half(), adj.shape)
    assert not cpu_kernel.supports(half, torch.randn(10, 3).half())


def test_building_the_kernels_leaves_torch_thread_count_alone():
    # Once torch has run a parallel region, the first parallel numba call (the build's own
    # check) resets the process's OpenMP threads to all cores; the build gives torch its count
    # back (a fresh process: the kernels build only once per process).
    import subprocess
    import sys

    if not cpu_kernel.numba_available():
        pytest.skip("numba is not installed (pip install 'stair-pyg[numba]')")
    code = ("import torch; torch.set_num_threads(1); torch.ones(1 << 22).sum(); "
            "from stair_pyg.nn import cpu_kernel; "
            "assert cpu_kernel.numba_available(); print(torch.get_num_threads(), "
            "cpu_kernel.cpu_kernel())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "numba"]


@needs_numba
def test_numba_kernel_leaves_torch_thread_count_alone(restore_choice):
    cpu_kernel.set_cpu_kernel("numba")
    adj, _ = random_csr(20, 20, 0.3, 2, torch.float32, torch.int32)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        csr_mm(adj, torch.randn(20, 4))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value,expected", [("torch", "torch"), (" Torch ", "torch"),
                                            ("", "auto")])
def test_environment_variable_sets_the_starting_choice(value, expected):
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); from stair_pyg.nn import cpu_kernel; "
            "print(cpu_kernel._choice, cpu_kernel.cpu_kernel())")
    env = {**__import__("os").environ, cpu_kernel.ENV_VAR: value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == expected
    assert out[1] == ("torch" if expected == "torch" or not cpu_kernel.numba_available()
                      else "numba")


@needs_numba
def test_automatic_choice_is_numba_on_any_thread_count_and_torch_when_asked(restore_choice):
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert cpu_kernel.cpu_kernel() == "numba"
        cpu_kernel.set_cpu_kernel("torch")  # an explicit choice holds on any thread count
        assert cpu_kernel.cpu_kernel() == "torch"
    finally:
        torch.set_num_threads(before)


def test_bad_environment_variable_is_reported_with_its_name(monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_choice", "fastest")
    with pytest.raises(ValueError, match="STAIR_PYG_CPU_KERNEL='fastest' is not a CPU kernel"):
        cpu_kernel.cpu_kernel()


@needs_numba
def test_kernel_compiles_without_a_writable_cache(monkeypatch, restore_choice):
    import numba

    real_njit = numba.njit
    seen = []

    def njit(**options):
        seen.append(options["cache"])
        if options["cache"]:
            raise RuntimeError("cannot cache function: no locator available")  # as numba says
        return real_njit(**options)

    import sys

    monkeypatch.setattr(numba, "njit", njit)
    # The kernels are decorated when their module is imported: import it afresh under the patch (the
    # cached module comes back when the test ends).
    monkeypatch.delitem(sys.modules, "stair_pyg.nn._numba_kernels")
    monkeypatch.setattr(cpu_kernel, "_kernel", None)
    cpu_kernel.set_cpu_kernel("numba")
    adj, dense = random_csr(15, 15, 0.3, 4, torch.float32, torch.int32)
    x = torch.randn(15, 6)
    torch.testing.assert_close(csr_mm(adj, x).double(), dense @ x.double(), rtol=1e-5, atol=1e-5)
    kernels = sys.modules["stair_pyg.nn._numba_kernels"]
    compiled = [name for name in vars(kernels) if hasattr(getattr(kernels, name), "py_func")]
    assert len(compiled) == 5
    # each kernel: the cached build fails, the plain one runs
    assert seen == [True, False] * len(compiled)
    monkeypatch.setattr(cpu_kernel, "_kernel", None)  # the next test compiles with its cache


@needs_numba
@pytest.mark.parametrize("rows,cols,channels", [(1, 1, 1), (13, 29, 7), (120, 300, 64),
                                                (40, 9, 3), (30, 20, 83)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transposed_product_without_a_transpose_matches_dense(rows, cols, channels, dtype,
                                                              restore_choice):
    from stair_pyg.nn.sparse import csr_mm_t

    adj, dense = random_csr(rows, cols, 0.2, rows * cols, dtype, torch.int32)
    g = torch.randn(rows, channels, generator=torch.Generator().manual_seed(2), dtype=dtype)
    cpu_kernel.set_cpu_kernel("numba")
    lazy = SparseAdj(adj, symmetric=False)
    out = csr_mm_t(lazy, g)
    assert lazy._adj_t is None  # answered without forming the transpose
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), dense.t() @ g.double(), rtol=tol, atol=tol)
    cpu_kernel.set_cpu_kernel("torch")  # torch's product forms the transpose, once
    torch.testing.assert_close(csr_mm_t(lazy, g).double(), dense.t() @ g.double(), rtol=tol,
                               atol=tol)
    assert lazy._adj_t is not None


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prefetching_changes_no_value(dtype, restore_choice):
    # A prefetch is a hint: at any distance (1, the default, none at all past the last
    # non-zero) both kernels give the same bits, and those match the dense product.
    from stair_pyg.nn import _numba_kernels as kernels

    assert cpu_kernel.numba_available()
    adj, dense = random_csr(90, 70, 0.15, 11, dtype, torch.int64)
    crow, col, val = (a.numpy() for a in (adj.crow_indices(), adj.col_indices(), adj.values()))
    x = torch.randn(70, 33, generator=torch.Generator().manual_seed(3), dtype=dtype)
    g = torch.randn(90, 33, generator=torch.Generator().manual_seed(4), dtype=dtype)
    outs, outs_t = [], []
    for distance in (1, cpu_kernel.PREFETCH_DISTANCE, len(col) + 1):
        out, out_t = torch.empty(90, 33, dtype=dtype), torch.empty(70, 33, dtype=dtype)
        kernels.csr_mm_rows(crow, col, val, x.numpy(), out.numpy(), x.numpy()[:0],
                            x.numpy()[:1], 3, distance)
        kernels.csr_mm_t_rows(crow, col, val, g.numpy(), out_t.numpy(), distance)
        outs.append(out)
        outs_t.append(out_t)
    assert all(torch.equal(o, outs[0]) for o in outs) and all(
        torch.equal(o, outs_t[0]) for o in outs_t)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(outs[0].double(), dense @ x.double(), rtol=tol, atol=tol)
    torch.testing.assert_close(outs_t[0].double(), dense.t() @ g.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [9, 16, 83])  # single channels, whole vectors, both
def test_row_kernels_match_float64_reference(each_cpu_kernel, dtype, channels):
    gen = torch.Generator().manual_seed(5)
    src = torch.randn(40, channels, generator=gen, dtype=dtype)
    index = torch.cat([torch.randint(0, 40, (30,), generator=gen), torch.tensor([7, 7, 7])])
    coef = torch.rand(channels, generator=gen, dtype=dtype)
    start = torch.randn(33, channels, generator=gen, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-13

    gathered = cpu_kernel.add_gathered_rows_(start.clone(), src, index, coef)
    expected = start.double() + coef.double() * src.double()[index]
    torch.testing.assert_close(gathered.double(), expected, rtol=tol, atol=tol)

    # Scattered: repeated indices (7 three times) add up; rows no index names stay as they were.
    target = torch.randn(40, channels, generator=gen, dtype=dtype)
    scattered = cpu_kernel.add_scattered_rows_(target.clone(), index, start, coef)
    reference = target.double().clone()
    for b, i in enumerate(index.tolist()):
        reference[i] += coef.double() * start[b].double()
    torch.testing.assert_close(scattered.double(), reference, rtol=tol, atol=tol)


def test_row_kernels_take_scalar_coefficients_and_non_contiguous_rows(each_cpu_kernel):
    # What the numba kernels do not take goes to torch's operations, with the same result.
    src = torch.randn(9, 20).t()  # non-contiguous [20, 9]
    index = torch.tensor([3, 0, 19, 3])
    out = cpu_kernel.add_gathered_rows_(torch.zeros(4, 9), src, index, torch.tensor(0.5))
    torch.testing.assert_close(out, 0.5 * src[index])
    back = cpu_kernel.add_scattered_rows_(torch.zeros(20, 9), index, out, torch.tensor(2.0))
    expected = torch.zeros(20, 9).index_add_(0, index, 2.0 * out)
    torch.testing.assert_close(back, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("channels", [6, 83])  # single channels; four, one vector and singles
def test_product_with_an_add_matches_dense_float64(each_cpu_kernel, dtype, per_channel,
                                                   channels):
    adj, dense = random_csr(50, 30, 0.2, 8, dtype, torch.int64)
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(30, channels, generator=gen, dtype=dtype)
    add = torch.randn(50, channels, generator=gen, dtype=dtype)
    coef = (torch.rand(channels, generator=gen, dtype=dtype) if per_channel
            else torch.tensor(0.3, dtype=dtype))
    out = csr_mm(adj, x, add=add, coef=coef)
    expected = dense @ x.double() + coef.double() * add.double()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    # A layout other than CSR goes through torch.sparse.mm, the add after it.
    coo = csr_mm(adj.to_sparse_coo(), x, add=add, coef=coef)
    torch.testing.assert_close(coo.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_series_without_autograd_matches_the_dense_series(each_cpu_kernel, num_layers):
    # Without autograd propagate_series runs Horner's form with the adds fused into the
    # products; with autograd the hop-by-hop sum. Both are the dense series.
    from stair_pyg.nn import propagate_series

    gen = torch.Generator().manual_seed(4)
    dense = torch.rand(40, 40, generator=gen, dtype=torch.float64)
    dense = dense * (torch.rand(40, 40, generator=gen) < 0.15)
    dense = dense + dense.t()
    adj = SparseAdj(dense.float().to_sparse_csr())
    x = torch.randn(40, 5, generator=gen)
    coefs = [torch.rand(5, generator=gen) for _ in range(num_layers + 1)]
    expected = sum(c.double() * (torch.linalg.matrix_power(dense, power) @ x.double())
                   for power, c in enumerate(coefs))
    with torch.no_grad():
        horner = propagate_series(x, adj, coefs)
        rows = propagate_series(x, adj, coefs, index=torch.tensor([3, 3, 0]))
    torch.testing.assert_close(horner.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows.double(), expected[[3, 3, 0]], rtol=1e-5, atol=1e-5)
    hop_by_hop = propagate_series(x.clone().requires_grad_(), adj, coefs)
    torch.testing.assert_close(hop_by_hop.detach().double(), expected, rtol=1e-5, atol=1e-5)
