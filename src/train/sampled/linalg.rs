//! Row-major f32 matrix products for the sampled trainer, on the `gemm` crate (the kernels the
//! exact engine already uses): one call per product, transposes expressed as strides so no
//! operand is copied.

/// `out[m, n] (+)= op(a) · op(b)` with row-major storage: `op(a)` is `[m, k]` (stored `[k, m]`
/// when `ta`), `op(b)` is `[k, n]` (stored `[n, k]` when `tb`). `accumulate` adds to `out`
/// instead of overwriting it.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
    accumulate: bool,
) {
    assert_eq!(out.len(), m * n, "out is [m, n]");
    assert_eq!(a.len(), m * k, "a holds m·k values");
    assert_eq!(b.len(), k * n, "b holds k·n values");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
    // SAFETY: every operand's extent matches (m, k, n) and its strides (asserted above), `out`
    // is exclusively borrowed and cannot alias `a` or `b`, and with `read_dst = false` its old
    // contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::engine::dot(a, b)
}

/// `y += alpha · x`.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f32> {
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        out
    }

    #[test]
    fn every_transpose_combination_matches_the_definition() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let want = naive(&a, &b, m, k, n, ta, tb);
                let mut got = vec![1f32; m * n];
                matmul(&mut got, &a, &b, (m, k, n), ta, tb, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "ta {ta} tb {tb}: {g} vs {w}");
                }
                matmul(&mut got, &a, &b, (m, k, n), ta, tb, true);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - 2.0 * w).abs() < 1e-5, "accumulate: {g} vs {}", 2.0 * w);
                }
            }
        }
    }
}
