"""Compiled inner loops (numba) of the RUMBA-SD iteration, one pass each, and of the mask's
median filter (:func:`median_of_ranks`).

Numpy evaluates an expression such as ``|1 - lambda div(grad u / |grad u|)|``
as a series of whole-array passes (about twenty for the TV factor, a dozen for
the Bessel-ratio weighting), each reading and writing memory; these kernels
compute the same quantities in one pass over values held in registers, in the
same order of floating-point operations as the numpy code they replace (no
fast-math contraction), so the results are equal to it to round-off (the
tests compare them).  They run on whatever thread calls them (released GIL),
so :class:`~rumba_bids.core.threads.WorkerPool` spreads them like the BLAS
calls.

numba is a runtime dependency because of the measured gain (README,
"Whole head, threads and TV"); llvmlite (numba's code generator, declared for
:func:`_prefetch`'s one LLVM intrinsic) comes with it.  Compiled code is cached on disk in
``NUMBA_CACHE_DIR`` or the package's ``__pycache__`` when writable
(:func:`_cache_wanted`); otherwise each process compiles on first use (1.6 s
for the voxel-wise kernels, 1.4 s for the TV kernel, 1.2 s for the median filter).
"""

from __future__ import annotations

import functools
import os
import warnings

import numba
import numba.core.compiler
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic


def _cache_wanted() -> bool:
    """Whether numba may keep compiled code on disk, and only where we choose.

    In ``NUMBA_CACHE_DIR`` when it is set and writable, else in this package's
    ``__pycache__`` when writable; otherwise not at all (numba would fall back
    to the user's home, which a container or cluster job may not own): each
    process then compiles on first use.
    """
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        return os.access(os.path.dirname(os.path.abspath(__file__)), os.W_OK)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


_CACHE = _cache_wanted() and not os.environ.get("NUMBA_DISABLE_CACHE")


class _NoAliasCompiler(numba.core.compiler.CompilerBase):
    """numba's nopython pipeline, with the arrays' data pointers marked ``noalias``.

    LLVM then needs no run-time test of overlap between the arrays before each
    vectorised loop: in :func:`tv_denominator`, whose loops are blocks of 16
    points, that test cost as much as the block (0.4 against 0.2 us per voxel
    for the divergence).  The caller guarantees that an array the kernel
    writes shares no memory with another argument.
    """

    def define_pipelines(self):
        self.state.flags.noalias = True
        return [numba.core.compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)]


def _jit(function=None, *, noalias=False):
    """``numba.njit`` with the GIL released, cached on disk where :func:`_cache_wanted` says.

    With ``noalias``, compiled by :class:`_NoAliasCompiler`.
    """
    if function is None:
        return functools.partial(_jit, noalias=noalias)
    options = {"nogil": True, "error_model": "numpy"}
    if noalias:
        options["pipeline_class"] = _NoAliasCompiler
    if _CACHE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", numba.NumbaWarning)
                return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # no cache locator after all
            pass
    return numba.njit(cache=False, **options)(function)


#: Points of one vectorised block of :func:`tv_denominator` (64 bytes of float32).
TV_BLOCK = 16
#: Bytes of a cache line: one software prefetch per line (:func:`_prefetch`).
CACHE_LINE = 64


@intrinsic
def _prefetch(typingctx, array, index):
    """Hint the CPU to bring the cache line of ``array[index]`` in (``llvm.prefetch``: a read,
    kept in all cache levels); it changes no value and never faults."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1]])
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        # (address, read, locality 3: keep it in every level, data cache)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return numba.types.void(array, index), codegen


@numba.njit(inline="always")
def _normalised_gradient(grid, p, sx, sy, s, e2, nx_, ny_, nz_):
    """``s grad u / sqrt(e2 + |grad u|^2)`` at point ``p`` of :func:`tv_denominator`'s grid."""
    u = grid[p]
    gx = grid[p + sx] - u
    gy = grid[p + sy] - u
    gz = grid[p + np.uint64(1)] - u
    norm = gx * gx
    norm += gy * gy
    norm += gz * gz
    norm += e2
    r = s / np.sqrt(norm)
    nx_[p] = gx * r
    ny_[p] = gy * r
    nz_[p] = gz * r


@numba.njit(inline="always")
def _divergence(nx_, ny_, nz_, p, sx, sy):
    """The backward-difference divergence of the normalised gradient at point ``p``."""
    div = nx_[p] + ny_[p]
    div += nz_[p]
    div -= nx_[p - sx]
    div -= ny_[p - sy]
    div -= nz_[p - np.uint64(1)]
    return div


@_jit(noalias=True)
def _fill_grid(row, fill, grid):
    """Copy the runs ``fill`` (:func:`tv_denominator`) of one compartment's ``row`` to ``grid``."""
    for k in range(fill.shape[0]):
        dst, src = fill[k, 0], fill[k, 1]
        for j in range(fill[k, 2]):  # a memcpy (noalias)
            grid[dst + j] = row[src + j]


@_jit(noalias=True)
def _gradient_pass(grid, gradient, lines, sx, sy, s, e2, nx_, ny_, nz_, following, ahead, stop):
    """The normalised gradient of one compartment, in blocks then on ``lines``.

    One cache line of ``following`` from column ``ahead`` is prefetched per
    block while ``ahead < stop``; returns the next ``ahead``.
    """
    block = np.uint64(TV_BLOCK)
    line = np.uint64(CACHE_LINE // following.itemsize)
    for k in range(gradient.shape[0]):
        if ahead < stop:
            _prefetch(following, ahead)
            ahead += line
        for j in range(block):  # a fixed count: one vector, no remainder loop
            _normalised_gradient(grid, gradient[k] + j, sx, sy, s, e2, nx_, ny_, nz_)
    for k in range(lines.shape[0]):
        base = lines[k, 0]
        for p in range(base + lines[k, 1], base + lines[k, 2]):
            _normalised_gradient(grid, p, sx, sy, s, e2, nx_, ny_, nz_)
    return ahead


@_jit(noalias=True)
def _divergence_pass(
    grid, nx_, ny_, nz_, divergence, sx, sy, lam, t, quotient, out, o0, following, ahead, stop
):
    """One compartment's ``|1 - lam div| + t`` (or ``grid / it``) into ``out[o0 + row]``.

    Prefetches as :func:`_gradient_pass` does, one line per item; returns the next ``ahead``.
    """
    one = grid.dtype.type(1)
    per_voxel = lam.shape[0] > 0
    line = np.uint64(CACHE_LINE // following.itemsize)
    for k in range(divergence.shape[0]):
        first, start, length = divergence[k, 0], divergence[k, 1], divergence[k, 2]
        if ahead < stop:
            _prefetch(following, ahead)
            ahead += line
        # a block (TV_BLOCK rows) is one pass of the vector loop, with no remainder
        for j in range(length):
            p = first + j
            div = _divergence(nx_, ny_, nz_, p, sx, sy)
            if per_voxel:
                div *= lam[start + j]
            den = np.abs(one - div) + t
            if quotient:
                den = grid[p] / den
            out[o0 + start + j] = den
    return ahead


@_jit(noalias=True)
def tv_denominator(
    weights,
    shape,
    fill,
    gradient,
    lines,
    divergence,
    scale,
    eps2,
    lam,
    tiny,
    out,
    out_first,
    grid,
    normed,
    quotient,
):
    """``|1 - lam * scale * div(grad u / sqrt(eps2 + |grad u|^2))| + tiny`` on one slab.

    With ``quotient``, ``u`` divided by it (the weights over the TV factor's
    inverse: what the TV step multiplies, :func:`multiply_ratio_tv`).

    The slab's padded local grid (:class:`~rumba_bids.core.tv.TVSlab`) is
    filled compartment by compartment from ``weights``; forward differences
    are taken in blocks of :data:`TV_BLOCK` points (and on ``lines``, point by
    point), and their backward differences (the divergence) at the slab's
    voxels, in blocks where ``divergence`` says so.  Operations are those of
    the numpy expression, in its order.  No array written may share memory
    with another argument (compiled ``noalias``).

    While a compartment's gradient and divergence run (bound by their loads
    and stores in cache), the weights that the next compartment's copy will
    read are prefetched, one cache line per block: the copy, which waits on
    memory otherwise, then finds them in cache (README, "Whole head, threads
    and TV").  The three passes are compiled as functions of their own
    (:func:`_fill_grid`, :func:`_gradient_pass`, :func:`_divergence_pass`):
    inlined into one, their loops kept the arrays' addresses on the stack and
    took 1.04x the time (README, "The TV kernel's three passes").

    Parameters
    ----------
    weights : ndarray, shape (C, V + 1)
        Compartment-major weights, the last column zero.
    shape : ndarray of uint64, shape (3,)
        The padded local grid ``(X, Y, Z)``, C order (``P = X Y Z`` points).
    fill : ndarray of uint64, shape (n, 3)
        Runs ``(first point, first column of weights, length)`` copied from ``weights``.
    gradient : ndarray of uint64, shape (n,)
        First points of the blocks where the normalised gradient is taken.
    lines : ndarray of uint64, shape (n, 3)
        ``(first point of a line, first z, stop z)`` where it is taken point by point.
    divergence : ndarray of uint64, shape (n, 3)
        ``(first point, first row within the slab, length)``: a block when the
        length is :data:`TV_BLOCK`, else a run taken point by point (see
        :class:`~rumba_bids.core.tv.TVSlab`).
    scale : float
        Factor of the divergence (a global lambda), folded into the normalisation.
    eps2 : ndarray, shape (C,)
        Squared gradient smoothing per compartment.
    lam : ndarray, shape (n_rows,) or (0,)
        Per-voxel factor of the divergence, or empty for none.
    tiny : float
        Added to the absolute value.
    out : ndarray, shape (C, >= out_first + n_rows)
        Receives the result in its columns ``out_first`` to ``out_first + n_rows``.
    out_first : int
        First column of ``out`` written.
    grid, normed : ndarray, shapes (>= P,) and (3, >= P)
        Work arrays (the weights' dtype); overwritten.
    quotient : bool
        Write ``u / (|1 - ...| + tiny)`` rather than ``|1 - ...| + tiny``.
    """
    # unsigned indices: numba then needs no wrap-around test, and the loops vectorise
    ny, nz = shape[1], shape[2]
    sx, sy = ny * nz, nz
    n_points = shape[0] * sx
    s = weights.dtype.type(scale)
    t = weights.dtype.type(tiny)
    grid[:n_points] = 0
    # the lower padding's backward neighbours contribute nothing
    normed[0, :sx] = 0
    for x in range(shape[0]):
        normed[1, x * sx : x * sx + nz] = 0
        for y in range(ny):
            normed[2, x * sx + y * sy] = 0
    nx_, ny_, nz_ = normed[0], normed[1], normed[2]
    o0 = np.uint64(out_first)
    # the columns of weights the copy reads
    source_first, source_stop = np.uint64(weights.shape[1]), np.uint64(0)
    for k in range(fill.shape[0]):
        source_first = min(source_first, fill[k, 1])
        source_stop = max(source_stop, fill[k, 1] + fill[k, 2])
    n_comp = weights.shape[0]
    for c in range(n_comp):
        _fill_grid(weights[c], fill, grid)
        following = weights[min(c + 1, n_comp - 1)]
        ahead = source_first if c + 1 < n_comp else source_stop
        ahead = _gradient_pass(
            grid, gradient, lines, sx, sy, s, eps2[c], nx_, ny_, nz_, following, ahead, source_stop
        )
        _divergence_pass(
            grid,
            nx_,
            ny_,
            nz_,
            divergence,
            sx,
            sy,
            lam,
            t,
            quotient,
            out[c],
            o0,
            following,
            ahead,
            source_stop,
        )
    return out


@_jit
def bessel_weighting(signal, reblurred, sigma2, order, out, ahead, ahead_first):
    """``signal * I_n(x) / I_{n-1}(x)`` with ``x = signal * reblurred / sigma2``, in one pass.

    The continued fraction of :func:`~rumba_bids.core.rumba.bessel_ratio`, with
    its operations in its order.  Meanwhile (the pass waits on its divisions,
    not on memory) the columns ``ahead_first`` to ``ahead_first + k`` of every
    row of ``ahead`` are prefetched, spread over the k voxels: the TV step
    reads them next from memory (:func:`multiply_ratio_tv`).

    Parameters
    ----------
    signal, reblurred : ndarray, shape (k, N)
        Normalised signals and the current predictions.
    sigma2 : ndarray, shape (k,)
        Noise variance of each voxel.
    order : int
        ``n`` (1 for Rician noise, the number of coils for noncentral chi).
    out : ndarray, shape (k, N)
        Receives the result.
    ahead : ndarray, shape (C, M)
        Rows to prefetch (none when it has no rows, e.g. shape (0, M)).
    ahead_first : int
        First column of ``ahead`` prefetched.
    """
    f = signal.dtype.type
    n = float(order)
    two = f(2.0)
    c3 = f(2 * n + 3)
    c2, d2 = f(n + 2.5), f(2 * n + 2)
    c1, d1 = f(n + 1.5), f(2 * n + 1)
    c0, d0 = f(n + 0.5), f(2 * n)
    n_vox, n_rows = signal.shape[0], ahead.shape[0]
    first = np.uint64(ahead_first)
    stop = first + np.uint64(n_vox)
    line = np.uint64(CACHE_LINE // ahead.itemsize)
    for i in range(n_vox):
        for c in range(i * n_rows // n_vox, (i + 1) * n_rows // n_vox):
            for p in range(first, stop, line):
                _prefetch(ahead[c], p)
        s2 = sigma2[i]
        for j in range(signal.shape[1]):
            s = signal[i, j]
            x = s * reblurred[i, j]
            x /= s2
            two_x = x * two
            denom = two_x + c3
            step = two_x * c2
            step /= denom
            denom = (two_x + d2) - step
            step = two_x * c1
            step /= denom
            denom = (two_x + d1) - step
            step = two_x * c0
            step /= denom
            denom = (x + d0) - step
            out[i, j] = (x / denom) * s
    return out


@_jit
def multiply_ratio(fodf, numerator, denominator, eps):
    """``fodf *= numerator / (denominator + eps)`` (the Richardson-Lucy step), all (k, C)."""
    e = fodf.dtype.type(eps)
    for i in range(fodf.shape[0]):
        for j in range(fodf.shape[1]):
            fodf[i, j] *= numerator[i, j] / (denominator[i, j] + e)
    return fodf


@_jit
def multiply_ratio_tv(new_weights, first, factor, eps):
    """The step with TV on compartment-major weights, for voxels ``first + i`` (i < k).

    ``new = q * (num / (den + eps))`` with ``num, den`` the two halves of
    ``factor`` (C, 2k) and ``q`` the weights over the inverse TV factor, which
    ``new_weights`` (C, V + 1) holds at these voxels on entry
    (:func:`tv_denominator` with ``quotient`` writes it there; it is replaced).
    """
    e = new_weights.dtype.type(eps)
    k = np.uint64(factor.shape[1] // 2)
    start = np.uint64(first)
    for c in range(new_weights.shape[0]):
        for i in range(k):
            ratio = factor[c, i] / (factor[c, k + i] + e)
            new_weights[c, start + i] *= ratio
    return new_weights


@_jit
def _pairwise_block(values, start, n):
    """numpy's pairwise sum of ``values[start:start + n]`` for n <= 128 (8 accumulators)."""
    if n < 8:
        total = values.dtype.type(0)
        for i in range(start, start + n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    while i < n - (n % 8):
        j = start + i
        r0 += values[j]
        r1 += values[j + 1]
        r2 += values[j + 2]
        r3 += values[j + 3]
        r4 += values[j + 4]
        r5 += values[j + 5]
        r6 += values[j + 6]
        r7 += values[j + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


@functools.cache
def pairwise_plan(n: int) -> tuple[np.ndarray, np.ndarray]:
    """How numpy's pairwise sum adds ``n`` values: its blocks and their order.

    numpy sums blocks of at most 128 values (:func:`_pairwise_block`) and adds
    the two halves of longer runs (split at a multiple of 8) recursively.
    Returns the blocks ``(start, length)``, shape (B, 2), and a postfix
    program: ``k >= 0`` pushes the sum of block ``k``, ``-1`` adds the two
    top sums (left + right); evaluating it needs a stack of depth
    ``log2(n / 128) + 2``.
    """
    blocks, program = [], []

    def visit(start, length):
        if length <= 128:
            program.append(len(blocks))
            blocks.append((start, length))
            return
        half = length // 2
        half -= half % 8
        visit(start, half)
        visit(start + half, length - half)
        program.append(-1)

    visit(0, int(n))
    return np.array(blocks, dtype=np.int64).reshape(-1, 2), np.array(program, dtype=np.int64)


@_jit
def noise_variance(reblurred, weighted, half_sq, norm, lower, upper, blocks, program, out):
    """The noise variance of each voxel from the new prediction, clipped to the bounds.

    ``(sum_j (0.5 r - w) r + half_sq) * norm``, the sum taken as numpy's
    ``sum(axis=1)`` does (pairwise, for identical results).

    Parameters
    ----------
    reblurred, weighted : ndarray, shape (k, N)
        New predictions; signals times the Bessel ratio.
    half_sq : ndarray, shape (k,)
        Half the squared norm of each signal.
    norm : float
        ``1 / (N n)``.
    lower, upper : float
        Bounds of the variance.
    blocks, program : ndarray
        :func:`pairwise_plan` of N.
    out : ndarray, shape (k,)
        Receives the result.
    """
    f = reblurred.dtype.type
    half, scale, lo, hi = f(0.5), f(norm), f(lower), f(upper)
    n_vol = reblurred.shape[1]
    terms = np.empty(n_vol, dtype=reblurred.dtype)
    stack = np.empty(program.shape[0] + 1, dtype=reblurred.dtype)
    for i in range(reblurred.shape[0]):
        for j in range(n_vol):
            r = reblurred[i, j]
            terms[j] = (r * half - weighted[i, j]) * r
        depth = 0
        for op in program:
            if op >= 0:
                stack[depth] = _pairwise_block(terms, blocks[op, 0], blocks[op, 1])
                depth += 1
            else:
                depth -= 1
                stack[depth - 1] = stack[depth - 1] + stack[depth]
        total = stack[0]
        total += half_sq[i]
        total *= scale
        out[i] = min(max(total, lo), hi)
    return out


@_jit
def median_of_ranks(padded, size, n_ranks, first, out):
    """Cubic median filter of integer ranks, sliding a two-level histogram along z.

    Equal to sorting each ``size**3`` window and taking its middle value, for
    ranks (the positions of the values in their sorted unique set): the median
    of the ranks is the rank of the median.  Each step along the last axis
    removes one face of the window from the histogram, adds the next, and
    moves the median's position from where it was: in bins of 64 ranks while
    they lie wholly on one side, then rank by rank.

    Parameters
    ----------
    padded : ndarray of int32, shape (X + size - 1, Y + size - 1, Z + size - 1)
        Ranks in ``[0, n_ranks)``, padded by ``size // 2`` on each side.
    size : int
        Odd window length.
    n_ranks : int
        Number of distinct ranks.
    first : int
        First output plane along x (``out[i]`` is plane ``first + i``).
    out : ndarray of int32, shape (n, Y, Z)
        Receives the median ranks.
    """
    shift = 6
    width = 1 << shift
    hist = np.zeros(n_ranks + width, np.int32)
    coarse = np.zeros((n_ranks >> shift) + 2, np.int32)
    half = (size * size * size) // 2  # the median is the value with `half` values below it
    ny, nz = out.shape[1], out.shape[2]
    m, below = 0, 0  # a rank and the number of window values below it
    for i in range(out.shape[0]):
        x = first + i
        for y in range(ny):
            for a in range(size):
                for b in range(size):
                    for c in range(size):
                        v = padded[x + a, y + b, c]
                        hist[v] += 1
                        coarse[v >> shift] += 1
                        below += v < m
            for z in range(nz):
                if z > 0:
                    for a in range(size):
                        for b in range(size):
                            v = padded[x + a, y + b, z - 1]
                            hist[v] -= 1
                            coarse[v >> shift] -= 1
                            below -= v < m
                            v = padded[x + a, y + b, z - 1 + size]
                            hist[v] += 1
                            coarse[v >> shift] += 1
                            below += v < m
                while below > half:  # the median is below m
                    if (m & (width - 1)) == 0 and below - coarse[(m >> shift) - 1] > half:
                        m -= width
                        below -= coarse[m >> shift]
                    else:
                        m -= 1
                        below -= hist[m]
                while below + hist[m] <= half:  # the median is above m
                    if (m & (width - 1)) == 0 and below + coarse[m >> shift] <= half:
                        below += coarse[m >> shift]
                        m += width
                    else:
                        below += hist[m]
                        m += 1
                out[i, y, z] = m
            for a in range(size):
                for b in range(size):
                    for c in range(nz - 1, nz - 1 + size):
                        v = padded[x + a, y + b, c]
                        hist[v] -= 1
                        coarse[v >> shift] -= 1
                        below -= v < m
    return out


@_jit
def scatter_columns(values, rows, first, factor, index, out):
    """``out[j, index[i]] = values[rows[i], first + j] * factor``: columns into volumes.

    Writes ``out.shape[0]`` consecutive columns of the voxel-major ``values``
    (one row per voxel) as rows of ``out`` (one direction volume per row),
    each voxel at its flat index: the transposition and the scatter in one
    pass, reading each row's columns together.

    Parameters
    ----------
    values : ndarray, shape (K, M)
    rows : ndarray of int, shape (n,)
    first : int
        First column written.
    factor : float
    index : ndarray of int, shape (n,)
        Flat positions in ``out``'s rows.
    out : ndarray, shape (m, P), native byte order
    """
    f = out.dtype.type(factor)
    for i in range(index.shape[0]):
        r = rows[i]
        p = index[i]
        for j in range(out.shape[0]):
            out[j, p] = values[r, first + j] * f
    return out
