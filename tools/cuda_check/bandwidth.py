"""Bandwidth of the AttSampler's CUDA forward on a GPU machine, through the plain C ABI (no MXNet).

Times the forward at batch 96 of 3x512x512 -> 224x224 float32 (the paper's sizes), with
attention-like and uniform profiles in both modes, and reports the bandwidth it achieves over
the bytes it actually moves, against the GPU's peak (memory clock x bus width) and a measured
device-to-device copy, measured side by side in one run; also the grid's and the backward's
times. tools/check_cuda_sampler.py runs this after its correctness check (``--skip-benchmark``
leaves it out).
"""
import numpy as np

__all__ = ['attention_profiles', 'bytes_moved', 'peak_bandwidth', 'benchmark']

TARGET_FRACTION = 0.7  # of the peak bandwidth, counting the bytes actually moved


def attention_profiles(rng, n, length):
    """Smooth single-peaked profiles, like the row/column maxima of an attention map."""
    pos = np.arange(length)
    centre = rng.uniform(0.3, 0.7, (n, 1)) * length
    width = rng.uniform(0.08, 0.2, (n, 1)) * length
    p = np.exp(-0.5 * ((pos - centre) / width) ** 2) + 0.05 * rng.uniform(0, 1, (n, length))
    return p.astype(np.float32)


def bytes_moved(ys, xs, n, c, h, w, oh, ow, elem, legacy):
    """Bytes the forward reads and writes in DRAM: the 32-byte sectors of the source rows its
    taps touch (each once), the output, and the tap tables; and the nominal count (whole
    input + output)."""
    def taps(coords, size):
        c_ = np.clip(coords, -2.0, size + 1.0) if legacy else np.clip(coords, 0.0, size - 1.0)
        f = np.floor(c_).astype(np.int64)
        b = np.clip(f, 0, max(size - 2, 0))
        return np.concatenate([b, np.minimum(b + 1, size - 1)], axis=-1)
    read = 0
    for i in range(n):
        rows = np.unique(taps(ys[i], h))
        sectors = np.unique(taps(xs[i], w) * elem // 32)
        read += c * len(rows) * len(sectors) * 32
    tap_bytes = 16 * n * (oh + ow)
    written = elem * n * c * oh * ow
    return read + 2 * tap_bytes + written, elem * n * c * (h * w + oh * ow)


def peak_bandwidth(cuda, nbytes=1 << 30):
    """(from the memory clock and bus width, from a device-to-device copy of nbytes), bytes per
    second."""
    clock_khz = cuda.attribute(cuda.ATTR_MEMORY_CLOCK_KHZ)
    bus_bits = cuda.attribute(cuda.ATTR_BUS_WIDTH_BITS)
    theoretical = 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate
    a, b = cuda.malloc(nbytes), cuda.malloc(nbytes)
    try:
        ms = cuda.time_ms(lambda: cuda.copy(b, a, nbytes, cuda.D2D), 10)
    finally:
        cuda.free(a)
        cuda.free(b)
    return theoretical, 2.0 * nbytes / (ms * 1e-3)


def benchmark(lib, cuda, log=print, batch=96, repeats=20, copy_bytes=1 << 30):
    """Times grid, forward and backward of batch x 3x512x512 -> 224x224 float32 on the GPU;
    returns dict(peak_gbs, copy_gbs, runs) and logs one line per run and the target's verdict."""
    n, c, h, w, scale = batch, 3, 512, 512, 224 / 512
    oh, ow = int(h * scale), int(w * scale)
    rng = np.random.RandomState(1)
    data = rng.uniform(0, 1, (n, c, h, w)).astype(np.float32)
    theoretical, copy = peak_bandwidth(cuda, copy_bytes)
    log('peak bandwidth: %.0f GB/s (memory clock x bus width), %.0f GB/s (measured '
        'device-to-device copy)' % (theoretical / 1e9, copy / 1e9))
    results = dict(peak_gbs=theoretical / 1e9, copy_gbs=copy / 1e9, runs=[])
    d_data = cuda.upload(data)
    d_out = cuda.malloc(4 * n * c * oh * ow)
    d_grad = cuda.malloc(data.nbytes)
    try:
        for profile in ('attention', 'uniform'):
            for legacy in (False, True):
                attrs = (scale, 4.0, 5, int(legacy))
                if profile == 'uniform':
                    att_y = np.ones((n, h), np.float32)
                    att_x = np.ones((n, w), np.float32)
                else:
                    att_y, att_x = attention_profiles(rng, n, h), attention_profiles(rng, n, w)
                ys, xs = np.empty((n, oh)), np.empty((n, ow))
                lib.call('tasn_sampler_grid_f32', att_y.ctypes.data, att_x.ctypes.data, n, h, w,
                         h, w, *attrs, ys.ctypes.data, xs.ctypes.data)
                actual, nominal = bytes_moved(ys, xs, n, c, h, w, oh, ow, 4, legacy)
                d_y, d_x = cuda.upload(att_y), cuda.upload(att_x)
                d_ys, d_xs = cuda.malloc(8 * n * oh), cuda.malloc(8 * n * ow)
                scratch = cuda.malloc(lib.scratch_bytes(n, c, h, w, h, w, attrs, 4))
                try:
                    def forward():
                        lib.call('tasn_sampler_cuda_forward_f32', d_data, d_y, d_x, n, c, h, w,
                                 h, w, *attrs, d_out, scratch, None)

                    def grid():
                        lib.call('tasn_sampler_cuda_grid_f32', d_y, d_x, n, h, w, h, w, *attrs,
                                 d_ys, d_xs, scratch, None)

                    def backward():
                        lib.call('tasn_sampler_cuda_backward_f32', d_out, d_y, d_x, n, c, h, w,
                                 h, w, *attrs, d_grad, scratch, None)
                    t_fwd = cuda.time_ms(forward, repeats)
                    t_grid = cuda.time_ms(grid, repeats)
                    t_bwd = cuda.time_ms(backward, repeats)
                    lib.call('tasn_sampler_cuda_synchronize', None)
                finally:
                    for p in (d_y, d_x, d_ys, d_xs, scratch):
                        cuda.free(p)
                gbs = actual / (t_fwd * 1e-3) / 1e9
                bwd_bytes = 4 * n * c * (h * w + oh * ow)  # writes all of grad, reads grad_out
                run = dict(profiles=profile, legacy=legacy, forward_ms=t_fwd, grid_ms=t_grid,
                           backward_ms=t_bwd, bytes_actual=actual, bytes_nominal=nominal,
                           forward_gbs=gbs, forward_nominal_gbs=nominal / (t_fwd * 1e-3) / 1e9,
                           forward_fraction_of_peak=gbs * 1e9 / theoretical,
                           forward_fraction_of_copy=gbs * 1e9 / copy,
                           backward_gbs=bwd_bytes / (t_bwd * 1e-3) / 1e9)
                results['runs'].append(run)
                log('forward %-9s %-6s %7.3f ms (grid alone %.3f ms): %6.0f GB/s over %.0f MB '
                    'actually moved = %3.0f%% of peak, %3.0f%% of copy  [%.0f GB/s nominal]; '
                    'backward %.3f ms, %.0f GB/s' % (
                        profile, 'legacy' if legacy else 'clean', t_fwd, t_grid, gbs,
                        actual / 1e6, 100 * run['forward_fraction_of_peak'],
                        100 * run['forward_fraction_of_copy'], run['forward_nominal_gbs'],
                        t_bwd, run['backward_gbs']))
    finally:
        for p in (d_data, d_out, d_grad):
            cuda.free(p)
    fractions = [r['forward_fraction_of_peak'] for r in results['runs']]
    log('target (forward >= %.0f%% of peak bandwidth): %s (%.0f%% .. %.0f%%)' % (
        100 * TARGET_FRACTION, 'met' if min(fractions) >= TARGET_FRACTION
        else 'NOT met in every run', 100 * min(fractions), 100 * max(fractions)))
    return results
