//! aarch64 NEON kernels, written with `std::arch` intrinsics where LLVM's auto-vectorized code
//! left instructions on the table (counted under qemu: docs/performance.md).
//!
//! Channel-last 3×3 depthwise convolution: each block of four channels (one vector) keeps its
//! nine weight vectors in registers for the whole image while its outputs go four at a time
//! along a row, so that the input columns they share are loaded once. Rows are read straight
//! from the input: taps on padding rows, or on the one padding column at either end of a row,
//! are skipped (other paddings go through a zero-padded copy). Loads and stores step along a
//! row with post-indexed `ld1`/`st1` (one instruction each; LLVM spent an address `add` beside
//! every load).
//!
//! Pointwise (1×1) convolution: hand-written `asm!` tiles of 4 pixels × 16 output channels (see
//! the section below).

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
        let img = Image {
            data: input,
            row: g.in_w * c,
            rows: g.in_h,
            cols: g.in_w,
            left: g.pad_left,
            top: g.pad_top,
        };
        return convolve(g, &img, weights, bias, clamp, out);
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
    // Padding rows read a row of zeros (their taps add nothing).
    let (mut zeros, spare) = take_scratch(img.cols * c, 0);
    zeros[..img.cols * c].fill(0.0);
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
                    zeros.as_ptr().add(c0)
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
    put_scratch((zeros, spare));
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

// ---------------------------------------------------------------------------------------------
// Pointwise (1×1) convolution

// One tile is 4 pixels × 16 output channels, accumulated in v0–v15 (`v(4p + j)`: pixel `p`,
// output channels `4j .. 4j + 4`). Each step takes four input channels: their values for the
// four pixels are loaded into v16–v19, then for each input channel its 16 weights go into
// v20–v23 or v24–v27 and 16 `fmla` by lane follow. Channel-last input: v(16 + p) holds pixel
// `p`'s four channels (lane = channel). Channel-first input: v(16 + c) holds channel `c`'s four
// pixels (lane = pixel). Channel-first output: each 4 × 4 block is transposed before it is
// stored, so that every register holds one output channel's four pixels.

/// Sixteen `fmla` into v0–v15: the weights `$w0`–`$w3` of one input channel times, for pixel
/// `p`, lane `$lp` of register `$rp` (that pixel's value of the channel).
macro_rules! pw_fmla {
    ($r0:literal $l0:literal, $r1:literal $l1:literal, $r2:literal $l2:literal,
     $r3:literal $l3:literal; $w0:literal $w1:literal $w2:literal $w3:literal) => {
        concat!(
            "fmla v0.4s, v",
            $w0,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v1.4s, v",
            $w1,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v2.4s, v",
            $w2,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v3.4s, v",
            $w3,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v4.4s, v",
            $w0,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v5.4s, v",
            $w1,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v6.4s, v",
            $w2,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v7.4s, v",
            $w3,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v8.4s, v",
            $w0,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v9.4s, v",
            $w1,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v10.4s, v",
            $w2,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v11.4s, v",
            $w3,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v12.4s, v",
            $w0,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
            "fmla v13.4s, v",
            $w1,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
            "fmla v14.4s, v",
            $w2,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
            "fmla v15.4s, v",
            $w3,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
        )
    };
}

/// The weights of the next input channel into `$w0`–`$w3` (one post-indexed `ld1`).
macro_rules! pw_weights {
    ($w0:literal $w1:literal $w2:literal $w3:literal) => {
        concat!(
            "ld1 {{v",
            $w0,
            ".4s, v",
            $w1,
            ".4s, v",
            $w2,
            ".4s, v",
            $w3,
            ".4s}}, [{w}], #64\n"
        )
    };
}

/// One step of four input channels, channel-last input: v(16 + p) = pixel p's channels.
macro_rules! pw_step_cl {
    () => {
        concat!(
            "ldr q16, [{x0}], #16\n",
            "ldr q17, [{x1}], #16\n",
            "ldr q18, [{x2}], #16\n",
            "ldr q19, [{x3}], #16\n",
            pw_weights!(20 21 22 23),
            pw_fmla!(16 0, 17 0, 18 0, 19 0; 20 21 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla!(16 1, 17 1, 18 1, 19 1; 24 25 26 27),
            pw_weights!(20 21 22 23),
            pw_fmla!(16 2, 17 2, 18 2, 19 2; 20 21 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla!(16 3, 17 3, 18 3, 19 3; 24 25 26 27),
        )
    };
}

/// One step of four input channels, channel-first input: v(16 + c) = channel c's pixels
/// (`{x0}` steps by `{xs}` bytes, one channel plane).
macro_rules! pw_step_cf {
    () => {
        concat!(
            "ld1 {{v16.4s}}, [{x0}], {xs}\n",
            "ld1 {{v17.4s}}, [{x0}], {xs}\n",
            "ld1 {{v18.4s}}, [{x0}], {xs}\n",
            "ld1 {{v19.4s}}, [{x0}], {xs}\n",
            pw_weights!(20 21 22 23),
            pw_fmla!(16 0, 16 1, 16 2, 16 3; 20 21 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla!(17 0, 17 1, 17 2, 17 3; 24 25 26 27),
            pw_weights!(20 21 22 23),
            pw_fmla!(18 0, 18 1, 18 2, 18 3; 20 21 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla!(19 0, 19 1, 19 2, 19 3; 24 25 26 27),
        )
    };
}

/// Accumulators from the bias, `{n8}` double steps, then one more step if `{r4}`.
macro_rules! pw_loop {
    ($bias:ident, $step:ident) => {
        concat!(
            // (Names every pointer operand: each layout's step uses only some of them.)
            "/* {x0} {x1} {x2} {x3} {xs} */\n",
            $bias!(),
            "cbz {n8}, 2f\n",
            "1:\n",
            $step!(),
            $step!(),
            "subs {n8}, {n8}, #1\n",
            "b.ne 1b\n",
            "2:\n",
            "cbz {r4}, 3f\n",
            $step!(),
            "3:\n",
        )
    };
}

/// The clamp of the sixteen accumulators: `fmaxnm` with v28, `fminnm` with v29.
macro_rules! pw_clamp {
    () => {
        concat!(
            "fmaxnm v0.4s, v0.4s, v28.4s\n",
            "fmaxnm v1.4s, v1.4s, v28.4s\n",
            "fmaxnm v2.4s, v2.4s, v28.4s\n",
            "fmaxnm v3.4s, v3.4s, v28.4s\n",
            "fmaxnm v4.4s, v4.4s, v28.4s\n",
            "fmaxnm v5.4s, v5.4s, v28.4s\n",
            "fmaxnm v6.4s, v6.4s, v28.4s\n",
            "fmaxnm v7.4s, v7.4s, v28.4s\n",
            "fmaxnm v8.4s, v8.4s, v28.4s\n",
            "fmaxnm v9.4s, v9.4s, v28.4s\n",
            "fmaxnm v10.4s, v10.4s, v28.4s\n",
            "fmaxnm v11.4s, v11.4s, v28.4s\n",
            "fmaxnm v12.4s, v12.4s, v28.4s\n",
            "fmaxnm v13.4s, v13.4s, v28.4s\n",
            "fmaxnm v14.4s, v14.4s, v28.4s\n",
            "fmaxnm v15.4s, v15.4s, v28.4s\n",
            "fminnm v0.4s, v0.4s, v29.4s\n",
            "fminnm v1.4s, v1.4s, v29.4s\n",
            "fminnm v2.4s, v2.4s, v29.4s\n",
            "fminnm v3.4s, v3.4s, v29.4s\n",
            "fminnm v4.4s, v4.4s, v29.4s\n",
            "fminnm v5.4s, v5.4s, v29.4s\n",
            "fminnm v6.4s, v6.4s, v29.4s\n",
            "fminnm v7.4s, v7.4s, v29.4s\n",
            "fminnm v8.4s, v8.4s, v29.4s\n",
            "fminnm v9.4s, v9.4s, v29.4s\n",
            "fminnm v10.4s, v10.4s, v29.4s\n",
            "fminnm v11.4s, v11.4s, v29.4s\n",
            "fminnm v12.4s, v12.4s, v29.4s\n",
            "fminnm v13.4s, v13.4s, v29.4s\n",
            "fminnm v14.4s, v14.4s, v29.4s\n",
            "fminnm v15.4s, v15.4s, v29.4s\n",
        )
    };
}

/// Channel-last output: pixel p's 16 channels from v(4p) .. v(4p + 3), `{os}` bytes apart.
macro_rules! pw_store_cl {
    () => {
        concat!(
            "st1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{o}], {os}\n",
            "st1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{o}], {os}\n",
            "st1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{o}], {os}\n",
            "st1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{o}], {os}\n",
        )
    };
}

/// Channel-first output of block `j` (v(j), v(4 + j), v(8 + j), v(12 + j): four pixels × four
/// channels) transposed through v16–v23, then its four channels' pixel vectors stored
/// `{os}` bytes (one channel plane) apart.
macro_rules! pw_store_cf_block {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            "trn1 v16.4s, v",
            $a,
            ".4s, v",
            $b,
            ".4s\n",
            "trn2 v17.4s, v",
            $a,
            ".4s, v",
            $b,
            ".4s\n",
            "trn1 v18.4s, v",
            $c,
            ".4s, v",
            $d,
            ".4s\n",
            "trn2 v19.4s, v",
            $c,
            ".4s, v",
            $d,
            ".4s\n",
            "trn1 v20.2d, v16.2d, v18.2d\n",
            "trn1 v21.2d, v17.2d, v19.2d\n",
            "trn2 v22.2d, v16.2d, v18.2d\n",
            "trn2 v23.2d, v17.2d, v19.2d\n",
            "st1 {{v20.4s}}, [{o}], {os}\n",
            "st1 {{v21.4s}}, [{o}], {os}\n",
            "st1 {{v22.4s}}, [{o}], {os}\n",
            "st1 {{v23.4s}}, [{o}], {os}\n",
        )
    };
}

macro_rules! pw_store_cf {
    () => {
        concat!(
            pw_store_cf_block!(0, 4, 8, 12),
            pw_store_cf_block!(1, 5, 9, 13),
            pw_store_cf_block!(2, 6, 10, 14),
            pw_store_cf_block!(3, 7, 11, 15),
        )
    };
}

/// The 16-channel tile's accumulators v0–v15 from its 16 biases.
macro_rules! pw_bias16 {
    () => {
        concat!(
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{b}]\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{b}]\n",
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}]\n",
            "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{b}]\n",
        )
    };
}

// The 8-channel tile (a block of 8 output channels: 24 = 16 + 8 in the classifier): v(2p + j),
// j = 0, 1; weights `[k][8]`, two input channels per `ld1` of four registers.

/// Eight `fmla` into v0–v7: weights `$w0`, `$w1` of one input channel times pixel p's value of
/// it (lane `$lp` of `$rp`).
macro_rules! pw_fmla8 {
    ($r0:literal $l0:literal, $r1:literal $l1:literal, $r2:literal $l2:literal,
     $r3:literal $l3:literal; $w0:literal $w1:literal) => {
        concat!(
            "fmla v0.4s, v",
            $w0,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v1.4s, v",
            $w1,
            ".4s, v",
            $r0,
            ".s[",
            $l0,
            "]\n",
            "fmla v2.4s, v",
            $w0,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v3.4s, v",
            $w1,
            ".4s, v",
            $r1,
            ".s[",
            $l1,
            "]\n",
            "fmla v4.4s, v",
            $w0,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v5.4s, v",
            $w1,
            ".4s, v",
            $r2,
            ".s[",
            $l2,
            "]\n",
            "fmla v6.4s, v",
            $w0,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
            "fmla v7.4s, v",
            $w1,
            ".4s, v",
            $r3,
            ".s[",
            $l3,
            "]\n",
        )
    };
}

macro_rules! pw_step8_cl {
    () => {
        concat!(
            "ldr q16, [{x0}], #16\n",
            "ldr q17, [{x1}], #16\n",
            "ldr q18, [{x2}], #16\n",
            "ldr q19, [{x3}], #16\n",
            pw_weights!(20 21 22 23),
            pw_fmla8!(16 0, 17 0, 18 0, 19 0; 20 21),
            pw_fmla8!(16 1, 17 1, 18 1, 19 1; 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla8!(16 2, 17 2, 18 2, 19 2; 24 25),
            pw_fmla8!(16 3, 17 3, 18 3, 19 3; 26 27),
        )
    };
}

macro_rules! pw_step8_cf {
    () => {
        concat!(
            "ld1 {{v16.4s}}, [{x0}], {xs}\n",
            "ld1 {{v17.4s}}, [{x0}], {xs}\n",
            "ld1 {{v18.4s}}, [{x0}], {xs}\n",
            "ld1 {{v19.4s}}, [{x0}], {xs}\n",
            pw_weights!(20 21 22 23),
            pw_fmla8!(16 0, 16 1, 16 2, 16 3; 20 21),
            pw_fmla8!(17 0, 17 1, 17 2, 17 3; 22 23),
            pw_weights!(24 25 26 27),
            pw_fmla8!(18 0, 18 1, 18 2, 18 3; 24 25),
            pw_fmla8!(19 0, 19 1, 19 2, 19 3; 26 27),
        )
    };
}

macro_rules! pw_bias8 {
    () => {
        concat!(
            "ld1 {{v0.4s, v1.4s}}, [{b}]\n",
            "ld1 {{v2.4s, v3.4s}}, [{b}]\n",
            "ld1 {{v4.4s, v5.4s}}, [{b}]\n",
            "ld1 {{v6.4s, v7.4s}}, [{b}]\n",
        )
    };
}

macro_rules! pw_clamp8 {
    () => {
        concat!(
            "fmaxnm v0.4s, v0.4s, v28.4s\n",
            "fmaxnm v1.4s, v1.4s, v28.4s\n",
            "fmaxnm v2.4s, v2.4s, v28.4s\n",
            "fmaxnm v3.4s, v3.4s, v28.4s\n",
            "fmaxnm v4.4s, v4.4s, v28.4s\n",
            "fmaxnm v5.4s, v5.4s, v28.4s\n",
            "fmaxnm v6.4s, v6.4s, v28.4s\n",
            "fmaxnm v7.4s, v7.4s, v28.4s\n",
            "fminnm v0.4s, v0.4s, v29.4s\n",
            "fminnm v1.4s, v1.4s, v29.4s\n",
            "fminnm v2.4s, v2.4s, v29.4s\n",
            "fminnm v3.4s, v3.4s, v29.4s\n",
            "fminnm v4.4s, v4.4s, v29.4s\n",
            "fminnm v5.4s, v5.4s, v29.4s\n",
            "fminnm v6.4s, v6.4s, v29.4s\n",
            "fminnm v7.4s, v7.4s, v29.4s\n",
        )
    };
}

macro_rules! pw_store8_cl {
    () => {
        concat!(
            "st1 {{v0.4s, v1.4s}}, [{o}], {os}\n",
            "st1 {{v2.4s, v3.4s}}, [{o}], {os}\n",
            "st1 {{v4.4s, v5.4s}}, [{o}], {os}\n",
            "st1 {{v6.4s, v7.4s}}, [{o}], {os}\n",
        )
    };
}

macro_rules! pw_store8_cf {
    () => {
        concat!(
            pw_store_cf_block!(0, 2, 4, 6),
            pw_store_cf_block!(1, 3, 5, 7)
        )
    };
}

/// The whole tile as one `asm!` block: `$step` the input layout's step, then the clamp (or
/// not) and `$store` the output layout's store. Operands: see [`pw_tile`].
macro_rules! pw_asm {
    ($bias:ident, $step:ident, $($clamp:ident)?; $store:ident, $x:expr, $xs:expr, $k:expr,
     $w:expr, $b:expr, $o:expr, $os:expr, $bounds:expr) => {
        asm!(
            pw_loop!($bias, $step), $($clamp!(),)? $store!(),
            x0 = inout(reg) $x[0] => _, x1 = inout(reg) $x[1] => _,
            x2 = inout(reg) $x[2] => _, x3 = inout(reg) $x[3] => _, xs = in(reg) $xs,
            w = inout(reg) $w => _, b = in(reg) $b, n8 = inout(reg) $k / 8 => _,
            r4 = in(reg) ($k / 4) % 2, o = inout(reg) $o => _, os = in(reg) $os,
            in("v28") $bounds.0, in("v29") $bounds.1,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _,
            out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            options(nostack),
        )
    };
}

/// Where a tile's input and output are, in the layouts of [`super::PointwiseLayout`].
struct PwTile {
    /// Channel-last input: each pixel's first channel. Channel-first: `x[0]` the first
    /// pixel of channel 0 (the other three unused).
    x: [*const f32; 4],
    /// Bytes between channel planes of a channel-first input.
    xs: usize,
    /// First output: pixel 0's channel `c0` (channel-last) or channel `c0`'s pixel 0.
    o: *mut f32,
    /// Bytes between the pixels (channel-last) or channel planes (channel-first) of the output.
    os: usize,
}

/// One tile of `WIDE` (16) or 8 output channels: `w` the block's packed weights `[k][16]` or
/// `[k][8]`, `bias` its biases, `k % 4 == 0`.
#[inline(always)]
unsafe fn pw_tile<const IN_CF: bool, const OUT_CF: bool, const CLAMP: bool>(
    t: &PwTile,
    wide: bool,
    k: usize,
    w: *const f32,
    bias: *const f32,
    bounds: (float32x4_t, float32x4_t),
) {
    macro_rules! tile {
        ($bias:ident, $step:ident, $($clamp:ident)?; $store:ident) => {
            pw_asm!($bias, $step, $($clamp)?; $store, t.x, t.xs, k, w, bias, t.o, t.os, bounds)
        };
    }
    match (wide, IN_CF, OUT_CF, CLAMP) {
        (true, false, false, false) => tile!(pw_bias16, pw_step_cl, ; pw_store_cl),
        (true, false, false, true) => tile!(pw_bias16, pw_step_cl, pw_clamp; pw_store_cl),
        (true, false, true, false) => tile!(pw_bias16, pw_step_cl, ; pw_store_cf),
        (true, false, true, true) => tile!(pw_bias16, pw_step_cl, pw_clamp; pw_store_cf),
        (true, true, false, false) => tile!(pw_bias16, pw_step_cf, ; pw_store_cl),
        (true, true, false, true) => tile!(pw_bias16, pw_step_cf, pw_clamp; pw_store_cl),
        (true, true, true, false) => tile!(pw_bias16, pw_step_cf, ; pw_store_cf),
        (true, true, true, true) => tile!(pw_bias16, pw_step_cf, pw_clamp; pw_store_cf),
        (false, false, false, false) => tile!(pw_bias8, pw_step8_cl, ; pw_store8_cl),
        (false, false, false, true) => tile!(pw_bias8, pw_step8_cl, pw_clamp8; pw_store8_cl),
        (false, false, true, false) => tile!(pw_bias8, pw_step8_cl, ; pw_store8_cf),
        (false, false, true, true) => tile!(pw_bias8, pw_step8_cl, pw_clamp8; pw_store8_cf),
        (false, true, false, false) => tile!(pw_bias8, pw_step8_cf, ; pw_store8_cl),
        (false, true, false, true) => tile!(pw_bias8, pw_step8_cf, pw_clamp8; pw_store8_cl),
        (false, true, true, false) => tile!(pw_bias8, pw_step8_cf, ; pw_store8_cf),
        (false, true, true, true) => tile!(pw_bias8, pw_step8_cf, pw_clamp8; pw_store8_cf),
    }
}

/// Pointwise convolution of `px` pixels by `pack` (see [`super::PointwisePack`]) in `layout`:
/// tiles of four pixels × sixteen (or eight) output channels. The last pixel tile and the last channel
/// block may overlap the previous ones (they rewrite the same values).
pub fn pointwise(
    pack: &super::PointwisePack,
    layout: super::PointwiseLayout,
    px: usize,
    x: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let clamped = clamp != Clamp::NONE;
    match (layout.input_cf, layout.output_cf, clamped) {
        (false, false, false) => pointwise_as::<false, false, false>(pack, px, x, clamp, out),
        (false, false, true) => pointwise_as::<false, false, true>(pack, px, x, clamp, out),
        (false, true, false) => pointwise_as::<false, true, false>(pack, px, x, clamp, out),
        (false, true, true) => pointwise_as::<false, true, true>(pack, px, x, clamp, out),
        (true, false, false) => pointwise_as::<true, false, false>(pack, px, x, clamp, out),
        (true, false, true) => pointwise_as::<true, false, true>(pack, px, x, clamp, out),
        (true, true, false) => pointwise_as::<true, true, false>(pack, px, x, clamp, out),
        (true, true, true) => pointwise_as::<true, true, true>(pack, px, x, clamp, out),
    }
}

fn pointwise_as<const IN_CF: bool, const OUT_CF: bool, const CLAMP: bool>(
    pack: &super::PointwisePack,
    px: usize,
    x: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let (k, co) = (pack.k, pack.co);
    assert!(pack.fits_neon() && px >= 4);
    assert!(x.len() == px * k && out.len() == px * co);
    let packed: usize = pack.blocks.iter().map(|&(_, width)| width * k).sum();
    assert!(pack.weights.len() == packed && pack.bias.len() == co);
    assert!(pack
        .blocks
        .iter()
        .all(|&(c0, width)| (width == 16 || width == 8) && c0 + width <= co));
    // SAFETY: plain register moves.
    let bounds = unsafe { (vdupq_n_f32(clamp.lo), vdupq_n_f32(clamp.hi)) };
    let mut p = 0;
    while p < px {
        let p0 = p.min(px - 4);
        // SAFETY: pixels p0 .. p0 + 4 ≤ px and channel blocks c0 .. c0 + 16 ≤ co (asserted
        // above and by `fits_neon`): each tile reads the four pixels' k inputs, the block's
        // packed weights and biases, and writes its 4 × 16 outputs, all inside the slices.
        unsafe {
            let mut wb = pack.weights.as_ptr();
            for &(c0, width) in &pack.blocks {
                let t = if IN_CF {
                    let x0 = x.as_ptr().add(p0);
                    PwTile {
                        x: [x0; 4],
                        xs: px * 4,
                        o: out.as_mut_ptr(),
                        os: 0,
                    }
                } else {
                    let xb = x.as_ptr().add(p0 * k);
                    PwTile {
                        x: [xb, xb.add(k), xb.add(2 * k), xb.add(3 * k)],
                        xs: 0,
                        o: out.as_mut_ptr(),
                        os: 0,
                    }
                };
                let t = if OUT_CF {
                    PwTile {
                        o: t.o.add(c0 * px + p0),
                        os: px * 4,
                        ..t
                    }
                } else {
                    PwTile {
                        o: t.o.add(p0 * co + c0),
                        os: co * 4,
                        ..t
                    }
                };
                let b = pack.bias.as_ptr().add(c0);
                pw_tile::<IN_CF, OUT_CF, CLAMP>(&t, width == 16, k, wb, b, bounds);
                wb = wb.add(k * width);
            }
        }
        p += 4;
    }
}
