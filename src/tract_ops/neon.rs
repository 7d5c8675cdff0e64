//! aarch64 depthwise convolutions, written with `std::arch` intrinsics where LLVM's
//! auto-vectorized code left instructions on the table (counted under qemu:
//! docs/performance.md).
//!
//! Channel-last 3×3 depthwise convolution: each block of four channels (one vector) keeps its
//! nine weight vectors in registers for the whole image while its outputs go four at a time
//! along a row, so that the input columns they share are loaded once. Rows are read straight
//! from the input: taps on padding rows, or on the one padding column at either end of a row,
//! are skipped (other paddings go through a zero-padded copy). Loads and stores step along a
//! row with post-indexed `ld1`/`st1` (one instruction each; LLVM spent an address `add` beside
//! every load).
//!
//! Channel-first at stride 1: see [`depthwise3x3_nchw_s1`].

use super::{padded_row_nhwc, put_scratch, take_scratch, Clamp, DwGeometry, PhasePlan, K};
use std::arch::aarch64::*;
use std::arch::asm;

/// Weights and bias of one block of four channels, and the clamp.
#[derive(Clone, Copy)]
struct Block {
    w: [float32x4_t; 9],
    b: float32x4_t,
    lo: float32x4_t,
    hi: float32x4_t,
}

/// An image the kernel reads: `rows` rows of `row` floats, `cols` pixels per row; its column
/// `j` is the convolution's padded column `j + left`.
struct Image<'a> {
    data: &'a [f32],
    row: usize,
    rows: usize,
    cols: usize,
    /// Padding columns before column 0 (0 or 1) and rows above row 0 (any).
    left: usize,
    top: usize,
    /// A row of zeros that padding rows read (their taps add nothing); empty when the image
    /// has every row the outputs read.
    zeros: &'a [f32],
}

/// 3×3 depthwise convolution of one NHWC image (`weights` tap-major `[3][3][C]`, `out`
/// `[out_h][out_w][C]`). Needs at least four channels; a channel count that is not a multiple
/// of four ends with a block overlapping the previous one.
pub fn depthwise3x3_nhwc(
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let c = g.channels;
    assert!(c >= 4 && g.is_valid());
    assert!(input.len() == g.input_len() && out.len() == g.output_len());
    assert!(weights.len() == 9 * c && bias.len() == c);
    // Padded columns the last output reads beyond the input (at most one for the direct path).
    let reach = (g.out_w - 1) * g.stride_w + K;
    let direct = g.pad_left <= 1 && reach <= g.pad_left + g.in_w + 1;
    if direct {
        let (mut zeros, spare) = take_scratch(g.in_w * c, 0);
        zeros[..g.in_w * c].fill(0.0);
        let img = Image {
            data: input,
            row: g.in_w * c,
            rows: g.in_h,
            cols: g.in_w,
            left: g.pad_left,
            top: g.pad_top,
            zeros: &zeros[..g.in_w * c],
        };
        convolve(g, &img, weights, bias, clamp, out);
        put_scratch((zeros, spare));
        return;
    }
    let hp = (g.out_h - 1) * g.stride_h + K;
    let (mut padded, spare) = take_scratch(hp * reach * c, 0);
    for (py, row) in padded[..hp * reach * c]
        .chunks_exact_mut(reach * c)
        .enumerate()
    {
        padded_row_nhwc(g, input, py, row);
    }
    let img = Image {
        data: &padded[..hp * reach * c],
        row: reach * c,
        rows: hp,
        cols: reach,
        left: 0,
        top: 0,
        zeros: &[],
    };
    convolve(g, &img, weights, bias, clamp, out);
    put_scratch((padded, spare));
}

/// The convolution over `img`, whose padding (`left` ≤ 1, at most one column past its right
/// edge, any rows) is read as zeros.
fn convolve(
    g: &DwGeometry,
    img: &Image,
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let clamped = clamp != Clamp::NONE;
    // SAFETY: `image` reads only pixels of `img` inside its rows and columns, the weights and
    // biases of whole channel blocks, and writes outputs inside `out` (lengths asserted by the
    // caller; see the comments in `image`).
    unsafe {
        match (clamped, g.stride_w) {
            (true, 1) => image::<true, 1>(g, img, weights, bias, clamp, out),
            (true, 2) => image::<true, 2>(g, img, weights, bias, clamp, out),
            (true, _) => image::<true, 0>(g, img, weights, bias, clamp, out),
            (false, 1) => image::<false, 1>(g, img, weights, bias, clamp, out),
            (false, 2) => image::<false, 2>(g, img, weights, bias, clamp, out),
            (false, _) => image::<false, 0>(g, img, weights, bias, clamp, out),
        }
    }
}

/// Outputs `x .. x + n` of every row, computed together; `left` / `right`: their first / last
/// input column is padding.
#[derive(Clone, Copy)]
struct Span {
    x: usize,
    n: usize,
    left: bool,
    right: bool,
}

/// How every output row is cut into spans: runs of four where possible, the padding columns at
/// either end in the first and last span.
fn spans(g: &DwGeometry, img: &Image, stride: usize, fixed: bool) -> Vec<Span> {
    let overhang = (g.out_w - 1) * stride + K > img.left + img.cols;
    let mut spans = Vec::new();
    let mut x = 0;
    while x < g.out_w {
        let n = match g.out_w - x {
            _ if !fixed => 1,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        spans.push(Span {
            x,
            n,
            left: x == 0 && img.left == 1,
            right: x + n == g.out_w && overhang,
        });
        x += n;
    }
    spans
}

/// The convolution with the column stride `S` known at compile time (0: read from `g`, one
/// output at a time).
#[inline(always)]
unsafe fn image<const CLAMP: bool, const S: usize>(
    g: &DwGeometry,
    img: &Image,
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let c = g.channels;
    let sw = if S == 0 { g.stride_w } else { S };
    let spans = spans(g, img, sw, S != 0);
    // The spans between the first and the last are plain runs of four.
    let inner = spans.len().saturating_sub(2);
    let plain = (1..=inner).all(|i| spans[i].n == 4 && !spans[i].left && !spans[i].right);
    let (head, tail) = if plain && S != 0 {
        (&spans[..1], &spans[spans.len().max(2) - 1..])
    } else {
        (&spans[..], &spans[..0])
    };
    let middle = if plain && S != 0 { inner } else { 0 };
    let starts = (0..c / 4)
        .map(|i| i * 4)
        .chain((!c.is_multiple_of(4)).then_some(c - 4));
    for c0 in starts {
        let blk = Block {
            w: std::array::from_fn(|t| vld1q_f32(weights.as_ptr().add(t * c + c0))),
            b: vld1q_f32(bias.as_ptr().add(c0)),
            lo: vdupq_n_f32(clamp.lo),
            hi: vdupq_n_f32(clamp.hi),
        };
        for y in 0..g.out_h {
            let rows: [*const f32; K] = std::array::from_fn(|ky| {
                let iy = (y * g.stride_h + ky).wrapping_sub(img.top);
                if iy < img.rows {
                    img.data.as_ptr().add(iy * img.row + c0)
                } else {
                    img.zeros.as_ptr().wrapping_add(c0)
                }
            });
            let o = out.as_mut_ptr().add(y * g.out_w * c + c0);
            // Leftmost tap column of output x in the image (wrapped −1 for the left padding
            // column, which is never loaded).
            let at = |x: usize| Run {
                rows,
                col: (x * sw).wrapping_sub(img.left),
                c,
                out: o.add(x * c),
            };
            for sp in head {
                span::<CLAMP, S>(&blk, sp, &at(sp.x));
            }
            for sp in &spans[1..1 + middle] {
                run::<4, CLAMP, S, false, false>(&blk, &at(sp.x));
            }
            for sp in tail {
                span::<CLAMP, S>(&blk, sp, &at(sp.x));
            }
        }
    }
}

/// One span, dispatched to its `run`.
#[inline(always)]
unsafe fn span<const CLAMP: bool, const S: usize>(blk: &Block, sp: &Span, at: &Run) {
    macro_rules! go {
        ($n:literal, $s:literal) => {
            match (sp.left, sp.right) {
                (false, false) => run::<$n, CLAMP, $s, false, false>(blk, at),
                (true, false) => run::<$n, CLAMP, $s, true, false>(blk, at),
                (false, true) => run::<$n, CLAMP, $s, false, true>(blk, at),
                (true, true) => run::<$n, CLAMP, $s, true, true>(blk, at),
            }
        };
    }
    match (sp.n, S) {
        (4, 1) => go!(4, 1),
        (2, 1) => go!(2, 1),
        (4, 2) => go!(4, 2),
        (2, 2) => go!(2, 2),
        _ => go!(1, 1),
    }
}

/// Where a run of outputs reads and writes.
struct Run {
    rows: [*const f32; K],
    /// Image column of the first output's first tap (wrapped −1: the padding column).
    col: usize,
    /// Floats per pixel.
    c: usize,
    out: *mut f32,
}

/// `N` neighbouring outputs (`N` ≤ 4): the `(N − 1)·S + 3` columns of each input row are loaded
/// once for all of them. `LEFT`: the first column is padding; `RIGHT`: the last one is.
#[inline(always)]
unsafe fn run<
    const N: usize,
    const CLAMP: bool,
    const S: usize,
    const LEFT: bool,
    const RIGHT: bool,
>(
    blk: &Block,
    at: &Run,
) {
    let step = at.c * 4;
    let cols = (N - 1) * S + K;
    let pad = |j: usize| (LEFT && j == 0) || (RIGHT && j == cols - 1);
    let mut acc = [blk.b; N];
    for (ky, row) in at.rows.iter().enumerate() {
        let mut q = row.wrapping_add(at.col.wrapping_mul(at.c));
        let mut v = [vdupq_n_f32(0.0); 12];
        for (j, slot) in v.iter_mut().enumerate().take(cols) {
            if pad(j) {
                q = q.wrapping_add(at.c);
            } else {
                *slot = load_step(&mut q, step);
            }
        }
        for kx in 0..K {
            let w = blk.w[ky * K + kx];
            for (i, a) in acc.iter_mut().enumerate() {
                if !pad(i * S + kx) {
                    *a = vfmaq_f32(*a, w, v[i * S + kx]);
                }
            }
        }
    }
    let mut o = at.out;
    for a in acc {
        let v = if CLAMP {
            vminnmq_f32(vmaxnmq_f32(a, blk.lo), blk.hi)
        } else {
            a
        };
        store_step(&mut o, step, v);
    }
}

/// `*p` as a vector, then `p` moved on by `step` bytes (`ld1` post-indexed).
#[inline(always)]
unsafe fn load_step(p: &mut *const f32, step: usize) -> float32x4_t {
    let v: float32x4_t;
    asm!("ld1 {{{v:v}.4s}}, [{p}], {s}", v = out(vreg) v, p = inout(reg) *p, s = in(reg) step,
        options(pure, readonly, nostack, preserves_flags));
    v
}

/// Stores `v` at `*p`, then moves `p` on by `step` bytes (`st1` post-indexed).
#[inline(always)]
unsafe fn store_step(p: &mut *mut f32, step: usize, v: float32x4_t) {
    asm!("st1 {{{v:v}.4s}}, [{p}], {s}", v = in(vreg) v, p = inout(reg) *p, s = in(reg) step,
        options(nostack, preserves_flags));
}

// ---------------------------------------------------------------------------------------------
// Channel-first 3×3 depthwise convolution at stride 1

/// 3×3 depthwise convolution of one NCHW image at stride 1 whose output rows are whole vectors
/// (`out_w % 4 == 0`): each channel plane is copied into a zero-padded scratch plane, then two
/// output rows at a time read the four input rows they share once (three unaligned loads per
/// row and vector).
pub fn depthwise3x3_nchw_s1(
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let (ho, wo) = (g.out_h, g.out_w);
    assert!(g.stride_h == 1 && g.stride_w == 1 && wo.is_multiple_of(4) && g.is_valid());
    assert!(input.len() == g.input_len() && out.len() == g.output_len());
    let ws = wo + K - 1;
    let plan = PhasePlan::new(g, 4, (ho - 1) * ws + wo);
    let (mut sbuf, spare) = take_scratch(plan.scratch_len, 0);
    let scratch = &mut sbuf[..plan.scratch_len];
    // Padding positions are never written by `fill`: zero them once per call.
    scratch.fill(0.0);
    let planes = input
        .chunks_exact(g.in_h * g.in_w)
        .zip(out.chunks_exact_mut(ho * wo));
    for (c, (pin, pout)) in planes.enumerate() {
        plan.fill(g, pin, scratch);
        let w: [f32; 9] = std::array::from_fn(|t| weights[t * g.channels + c]);
        // SAFETY: the scratch plane has ho + 2 rows of ws = wo + 2 floats (PhasePlan at stride
        // 1), so rows y .. y + 3 and columns x .. x + 6 of every vector read exist; `pout` is
        // ho × wo.
        unsafe {
            if clamp == Clamp::NONE {
                plane_s1::<false>(scratch.as_ptr(), ws, (ho, wo), w, bias[c], clamp, pout)
            } else {
                plane_s1::<true>(scratch.as_ptr(), ws, (ho, wo), w, bias[c], clamp, pout)
            }
        };
    }
    put_scratch((sbuf, spare));
}

#[inline(always)]
unsafe fn plane_s1<const CLAMP: bool>(
    src: *const f32,
    ws: usize,
    (ho, wo): (usize, usize),
    w: [f32; 9],
    bias: f32,
    clamp: Clamp,
    out: &mut [f32],
) {
    let w: [float32x4_t; 9] = w.map(|v| vdupq_n_f32(v));
    let (b, lo, hi) = (
        vdupq_n_f32(bias),
        vdupq_n_f32(clamp.lo),
        vdupq_n_f32(clamp.hi),
    );
    let clamped = |v| {
        if CLAMP {
            vminnmq_f32(vmaxnmq_f32(v, lo), hi)
        } else {
            v
        }
    };
    // Three taps of input row `r` (columns x .. x + 6) into `acc` with weight row `ky`.
    let taps = |acc, r: *const f32, ky: usize| {
        let acc = vfmaq_f32(acc, w[3 * ky], vld1q_f32(r));
        let acc = vfmaq_f32(acc, w[3 * ky + 1], vld1q_f32(r.add(1)));
        vfmaq_f32(acc, w[3 * ky + 2], vld1q_f32(r.add(2)))
    };
    let o = out.as_mut_ptr();
    let mut y = 0;
    while y < ho {
        let two = y + 1 < ho;
        for x in (0..wo).step_by(4) {
            let r = |i: usize| src.add((y + i) * ws + x);
            let mut a0 = taps(taps(taps(b, r(0), 0), r(1), 1), r(2), 2);
            vst1q_f32(o.add(y * wo + x), clamped(a0));
            if two {
                a0 = taps(taps(taps(b, r(1), 0), r(2), 1), r(3), 2);
                vst1q_f32(o.add((y + 1) * wo + x), clamped(a0));
            }
        }
        y += 2;
    }
}
