//! Bilinear upsampling (align_corners = false) of the coarser disparity scales to the target
//! grid, and its transpose for the backward pass: separable tap tables per axis, rayon over rows.

use super::kernels::Grid;
use super::real::Real;
use rayon::prelude::*;

/// One axis of bilinear upsampling (align_corners = false): for each output index the two input
/// indices and their weights; and for each input index the outputs that read it.
#[derive(Debug, Clone, Default)]
pub struct UpsampleAxis<T> {
    pub taps: Vec<(usize, usize, T, T)>,
    pub readers: Vec<Vec<(usize, T)>>,
}

impl<T: Real> UpsampleAxis<T> {
    pub fn new(input: usize, output: usize) -> Self {
        let scale = T::from_f64(input as f64 / output as f64);
        let half = T::from_f64(0.5);
        let mut readers = vec![Vec::new(); input];
        let taps = (0..output)
            .map(|o| {
                let mut src = scale * (T::from_usize(o) + half) - half;
                if src < T::ZERO {
                    src = T::ZERO;
                }
                let i0 = src.floor().to_index().min(input - 1);
                let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
                let l1 = src - T::from_usize(i0);
                let l0 = T::ONE - l1;
                readers[i0].push((o, l0));
                readers[i1].push((o, l1));
                (i0, i1, l0, l1)
            })
            .collect();
        Self { taps, readers }
    }
}

/// Bilinear upsampling of a `cols.readers.len()` x `rows.readers.len()` map to the grid.
pub fn upsample<T: Real>(
    grid: Grid,
    rows: &UpsampleAxis<T>,
    cols: &UpsampleAxis<T>,
    input: &[T],
    output: &mut [T],
) {
    let (w, in_w) = (grid.width, cols.readers.len());
    output.par_chunks_mut(w).enumerate().for_each(|(y, out_row)| {
        let (y0, y1, ly0, ly1) = rows.taps[y];
        let (r0, r1) = (&input[y0 * in_w..(y0 + 1) * in_w], &input[y1 * in_w..(y1 + 1) * in_w]);
        for (x, o) in out_row.iter_mut().enumerate() {
            let (x0, x1, lx0, lx1) = cols.taps[x];
            *o = ly0 * (lx0 * r0[x0] + lx1 * r0[x1]) + ly1 * (lx0 * r1[x0] + lx1 * r1[x1]);
        }
    });
}

/// Transpose of [`upsample`]: `grad_output` (grid) → `grad_input`; `rows_tmp` holds
/// grid-height x input-width values.
pub fn upsample_transpose<T: Real>(
    grid: Grid,
    rows: &UpsampleAxis<T>,
    cols: &UpsampleAxis<T>,
    grad_output: &[T],
    rows_tmp: &mut [T],
    grad_input: &mut [T],
) {
    let (w, in_w) = (grid.width, cols.readers.len());
    rows_tmp.par_chunks_mut(in_w).zip(grad_output.par_chunks(w)).for_each(|(tmp, g)| {
        tmp.fill(T::ZERO);
        for (x, &gv) in g.iter().enumerate() {
            let (x0, x1, lx0, lx1) = cols.taps[x];
            tmp[x0] += lx0 * gv;
            tmp[x1] += lx1 * gv;
        }
    });
    let rows_tmp = &*rows_tmp;
    grad_input.par_chunks_mut(in_w).enumerate().for_each(|(i, out)| {
        out.fill(T::ZERO);
        for &(y, weight) in &rows.readers[i] {
            for (o, &t) in out.iter_mut().zip(&rows_tmp[y * in_w..(y + 1) * in_w]) {
                *o += weight * t;
            }
        }
    });
}
