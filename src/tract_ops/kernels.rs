//! Numeric kernels behind the tract operators of this module: a 3×3 depthwise convolution
//! (channel-first and channel-last layouts, any stride and padding, fused clamp), a max-pool
//! (both layouts), and a pointwise convolution (any mix of layouts, fused bias and clamp) with
//! the im2col that turns a small dense convolution into one. aarch64 runs the channel-last
//! depthwise and the pointwise kernels from `neon.rs` (intrinsics and `asm!`).
//!
//! The code is plain Rust written so that LLVM vectorizes it: fixed-size lane blocks
//! (`[f32; L]`) with no data-dependent control flow inside. On x86-64 each entry point is
//! compiled three times — for AVX-512F, for AVX2+FMA and for the SSE2 baseline — and the widest
//! one the CPU supports is picked at run time. On aarch64 NEON is the baseline, so one build (with
//! fused multiply-adds) serves every board.
//!
//! Channel-first (NCHW): every channel plane is copied into a zero-padded scratch image, split
//! into `stride_h × stride_w` phase planes (a space-to-depth). In that layout each of the nine
//! taps of output `(y, x)` reads the element at a fixed offset from `y · ws + x`, so the whole
//! plane is a run of contiguous vector multiply-adds with no border cases.
//!
//! Channel-last (NHWC): the image is copied into a zero-padded scratch, and each output pixel
//! is `L` channels at a time of nine multiply-adds whose weights stay in registers along a row.
//! The last block of a row of channels overlaps the previous one (it starts at `C − L`), so no
//! channel count needs padding.

#[cfg(target_arch = "aarch64")]
#[path = "neon.rs"]
mod neon;
#[cfg(target_arch = "aarch64")]
#[path = "neon_pointwise.rs"]
mod neon_pointwise;

/// Elementwise bounds applied to the convolution output (a fused Clip or ReLU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp {
    pub lo: f32,
    pub hi: f32,
}

impl Clamp {
    /// No bounds.
    pub const NONE: Clamp = Clamp {
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };

    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        if cfg!(target_arch = "aarch64") {
            // One `fmaxnm` / `fminnm` each (the compares below become compare-and-select).
            v.max(self.lo).min(self.hi)
        } else {
            // Written as compares so that it lowers to x86's `maxps` / `minps`.
            let v = if v < self.lo { self.lo } else { v };
            if v > self.hi {
                self.hi
            } else {
                v
            }
        }
    }
}

/// Geometry of a 3×3 depthwise convolution over one image (batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DwGeometry {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    /// Zero rows above / columns left of the input; the bottom and right padding follow from
    /// the output size.
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// Kernel height and width.
pub const K: usize = 3;
/// Taps per channel.
pub const TAPS: usize = K * K;

impl DwGeometry {
    /// Elements of one input image.
    pub fn input_len(&self) -> usize {
        self.channels * self.in_h * self.in_w
    }

    /// Elements of one output image.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_h * self.out_w
    }

    /// Whether the output size is consistent with input, stride and padding (the padded input
    /// covers every tap of every output, and no output reads only padding rows beyond it).
    pub fn is_valid(&self) -> bool {
        let ok_axis = |inp: usize, s: usize, pad: usize, out: usize| {
            s >= 1 && out >= 1 && pad < K && (out - 1) * s < inp + pad
        };
        self.channels >= 1
            && ok_axis(self.in_h, self.stride_h, self.pad_top, self.out_h)
            && ok_axis(self.in_w, self.stride_w, self.pad_left, self.out_w)
    }

    /// Multiply-adds of one run.
    pub fn fmas(&self) -> usize {
        self.output_len() * TAPS
    }
}

thread_local! {
    /// Scratch images of the kernels, reused across calls (growing only): a fresh allocation
    /// of the detector's first padded image (~420 KB) costs more page faults than its
    /// arithmetic.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// The two scratch buffers, grown to at least `a` and `b` elements (contents unspecified).
/// Hand them back with [`put_scratch`]. (No closure here: a closure body would not be compiled
/// with the caller's target features.)
#[inline(always)]
fn take_scratch(a: usize, b: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut x, mut y) = SCRATCH.with_borrow_mut(std::mem::take);
    if x.len() < a {
        x.resize(a, 0.0);
    }
    if y.len() < b {
        y.resize(b, 0.0);
    }
    (x, y)
}

#[inline(always)]
fn put_scratch(buffers: (Vec<f32>, Vec<f32>)) {
    SCRATCH.with_borrow_mut(|s| *s = buffers);
}

/// `acc + a · b`, fused where the target has the instruction (`FMA`), else two roundings.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA {
        a.mul_add(b, acc)
    } else {
        a * b + acc
    }
}

// ---------------------------------------------------------------------------------------------
// Channel-first (NCHW)

/// Layout of the phase-split scratch plane of the channel-first kernel.
struct PhasePlan {
    /// Width of every phase plane (`out_w + 2 / stride_w`).
    ws: usize,
    /// Rows of every phase plane.
    hs: usize,
    /// Offset of each tap's element relative to output position `y · ws + x`.
    offsets: [usize; TAPS],
    /// Length of the scratch buffer, including slack for the last vector block.
    scratch_len: usize,
}

impl PhasePlan {
    fn new(g: &DwGeometry, block: usize, flat_len: usize) -> PhasePlan {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let ws = g.out_w + (K - 1) / sw;
        let hs = g.out_h + (K - 1) / sh;
        let plane = hs * ws;
        let mut offsets = [0; TAPS];
        for ky in 0..K {
            for kx in 0..K {
                let phase = (ky % sh) * sw + kx % sw;
                offsets[ky * K + kx] = phase * plane + (ky / sh) * ws + kx / sw;
            }
        }
        let max_off = offsets.iter().copied().max().unwrap_or(0);
        let scratch_len = (sh * sw * plane).max(max_off + flat_len.next_multiple_of(block));
        PhasePlan {
            ws,
            hs,
            offsets,
            scratch_len,
        }
    }

    /// Copies one input plane into the phase planes. Positions that hold padding are never
    /// written, so they keep the zeros the scratch starts with.
    #[inline(always)]
    fn fill(&self, g: &DwGeometry, plane_in: &[f32], scratch: &mut [f32]) {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let plane = self.hs * self.ws;
        // Columns of the padded row that land in the phase planes, and input columns in them.
        let cols = (self.ws * sw).min(g.pad_left + g.in_w);
        let n_in = cols.saturating_sub(g.pad_left);
        for (iy, row) in plane_in.chunks_exact(g.in_w).enumerate() {
            let py = iy + g.pad_top;
            let (a, r) = (py % sh, py / sh);
            if r >= self.hs {
                break;
            }
            let base = a * sw * plane + r * self.ws;
            if sw == 1 {
                scratch[base + g.pad_left..][..n_in].copy_from_slice(&row[..n_in]);
            } else if sw == 2 {
                // Input column pairs land on whole phase columns once an odd padding is
                // evened out by one leading column (vectorizes as a deinterleave).
                let lead = (g.pad_left % 2).min(n_in);
                let (even, odd) = scratch[base..].split_at_mut(plane);
                if lead == 1 {
                    odd[g.pad_left / 2] = row[0];
                }
                let q0 = (g.pad_left + lead) / 2;
                let pairs = row[lead..n_in].chunks_exact(2);
                let tail = pairs.remainder();
                let n = (n_in - lead) / 2;
                let dst = even[q0..q0 + n].iter_mut().zip(&mut odd[q0..q0 + n]);
                for ((e, o), p) in dst.zip(pairs) {
                    *e = p[0];
                    *o = p[1];
                }
                if let [t] = tail {
                    even[q0 + n] = *t;
                }
            } else {
                for (ix, v) in row[..n_in].iter().enumerate() {
                    let px = ix + g.pad_left;
                    scratch[(a * sw + px % sw) * plane + r * self.ws + px / sw] = *v;
                }
            }
        }
    }
}

/// `dst[j] = clamp(bias + Σ_t w[t] · src[offsets[t] + start + j])`, `B` lanes at a time;
/// `dst.len()` must be a multiple of `B`.
#[inline(always)]
fn taps_run<const B: usize, const FMA: bool>(
    src: &[f32],
    offsets: &[usize; TAPS],
    w: &[f32; TAPS],
    bias: f32,
    clamp: Clamp,
    start: usize,
    dst: &mut [f32],
) {
    for (k, d) in dst.chunks_exact_mut(B).enumerate() {
        let at = start + k * B;
        let mut acc = [bias; B];
        for t in 0..TAPS {
            let s: &[f32; B] = src[offsets[t] + at..][..B].try_into().unwrap();
            for j in 0..B {
                acc[j] = madd::<FMA>(w[t], s[j], acc[j]);
            }
        }
        for j in 0..B {
            d[j] = clamp.apply(acc[j]);
        }
    }
}

/// The lane block for one NCHW plane: a row when the output row is a multiple of 8
/// (written in place), else the whole flattened plane (through a staging buffer).
fn nchw_block(out_w: usize) -> (usize, bool) {
    match out_w {
        w if w % 32 == 0 => (32, true),
        w if w % 16 == 0 => (16, true),
        w if w % 8 == 0 => (8, true),
        _ => (8, false),
    }
}

#[inline(always)]
fn dw_nchw_impl<const FMA: bool>(
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    match nchw_block(g.out_w) {
        (32, true) => dw_nchw_block::<32, true, FMA>(g, input, weights, bias, clamp, out),
        (16, true) => dw_nchw_block::<16, true, FMA>(g, input, weights, bias, clamp, out),
        (_, true) => dw_nchw_block::<8, true, FMA>(g, input, weights, bias, clamp, out),
        _ => dw_nchw_block::<8, false, FMA>(g, input, weights, bias, clamp, out),
    }
}

#[inline(always)]
fn dw_nchw_block<const B: usize, const ROWS: bool, const FMA: bool>(
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let (ho, wo) = (g.out_h, g.out_w);
    let ws = g.out_w + (K - 1) / g.stride_w;
    let flat_len = if ROWS { (ho - 1) * ws + wo } else { ho * ws };
    let plan = PhasePlan::new(g, B, flat_len);
    let staging_len = if ROWS {
        0
    } else {
        flat_len.next_multiple_of(B)
    };
    let (mut sbuf, mut tbuf) = take_scratch(plan.scratch_len, staging_len);
    let (scratch, staging) = (&mut sbuf[..plan.scratch_len], &mut tbuf[..staging_len]);
    // Padding positions are never written by `fill`: zero them once per call.
    scratch.fill(0.0);
    let planes_in = input.chunks_exact(g.in_h * g.in_w);
    let planes_out = out.chunks_exact_mut(ho * wo);
    for (c, (pin, pout)) in planes_in.zip(planes_out).enumerate() {
        plan.fill(g, pin, scratch);
        let w: [f32; TAPS] = std::array::from_fn(|t| weights[t * g.channels + c]);
        if ROWS {
            for (y, row) in pout.chunks_exact_mut(wo).enumerate() {
                taps_run::<B, FMA>(scratch, &plan.offsets, &w, bias[c], clamp, y * ws, row);
            }
        } else {
            taps_run::<B, FMA>(scratch, &plan.offsets, &w, bias[c], clamp, 0, staging);
            for (row, flat) in pout.chunks_exact_mut(wo).zip(staging.chunks(ws)) {
                row.copy_from_slice(&flat[..wo]);
            }
        }
    }
    put_scratch((sbuf, tbuf));
}

// ---------------------------------------------------------------------------------------------
// Channel-last (NHWC)

/// Writes padded row `py` of the image (zero-padded `[wp][c]`) into `dst`.
#[inline(always)]
fn padded_row_nhwc(g: &DwGeometry, input: &[f32], py: usize, dst: &mut [f32]) {
    let c = g.channels;
    let wp = dst.len() / c;
    let left = g.pad_left * c;
    let copied = g.in_w.min(wp - g.pad_left) * c;
    let iy = py.wrapping_sub(g.pad_top);
    if iy < g.in_h {
        dst[..left].fill(0.0);
        dst[left..left + copied].copy_from_slice(&input[iy * g.in_w * c..][..copied]);
        dst[left + copied..].fill(0.0);
    } else {
        dst.fill(0.0);
    }
}

/// Channel block starts covering `0..c` with blocks of `l` (the last one overlapping).
fn block_starts(c: usize, l: usize) -> impl Iterator<Item = usize> {
    let full = c / l;
    let last = (!c.is_multiple_of(l)).then_some(c - l);
    (0..full).map(move |i| i * l).chain(last)
}

/// Writes padded row `py` of a channel-first image, transposed to channel-last `[wp][c]`.
#[inline(always)]
fn padded_row_from_nchw(g: &DwGeometry, input: &[f32], py: usize, dst: &mut [f32]) {
    let c = g.channels;
    let wp = dst.len() / c;
    dst.fill(0.0);
    let iy = py.wrapping_sub(g.pad_top);
    if iy < g.in_h {
        let plane = g.in_h * g.in_w;
        for ix in 0..g.in_w.min(wp - g.pad_left) {
            let d = &mut dst[(ix + g.pad_left) * c..][..c];
            for (ch, v) in d.iter_mut().enumerate() {
                *v = input[ch * plane + iy * g.in_w + ix];
            }
        }
    }
}

/// The convolution vectorized across channels: the padded input rows pass through a ring of
/// three channel-last rows (hot in L1, each image row written once), so the working set stays
/// the input and output images. `CF`: input and output are channel-first (small planes with
/// many channels: the rows are transposed on the way in and out), else channel-last.
#[inline(always)]
fn dw_ring<const L: usize, const FMA: bool, const CF: bool>(
    g: &DwGeometry,
    input: &[f32],
    weights_tap_major: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let c = g.channels;
    let row_len = ((g.out_w - 1) * g.stride_w + K) * c;
    let out_row_len = g.out_w * c;
    let (mut ring, mut staging) = take_scratch(K * row_len, out_row_len);
    let mut held = [usize::MAX; K];
    for y in 0..g.out_h {
        for ky in 0..K {
            let py = y * g.stride_h + ky;
            if held[py % K] != py {
                let dst = &mut ring[py % K * row_len..][..row_len];
                if CF {
                    padded_row_from_nchw(g, input, py, dst);
                } else {
                    padded_row_nhwc(g, input, py, dst);
                }
                held[py % K] = py;
            }
        }
        let rows: [&[f32]; K] = std::array::from_fn(|ky| {
            let py = y * g.stride_h + ky;
            &ring[py % K * row_len..][..row_len]
        });
        if CF {
            let row = &mut staging[..out_row_len];
            dw_nhwc_row::<L, FMA>(g, rows, weights_tap_major, bias, clamp, row);
            let plane = g.out_h * g.out_w;
            for (x, px) in row.chunks_exact(c).enumerate() {
                for (ch, v) in px.iter().enumerate() {
                    out[ch * plane + y * g.out_w + x] = *v;
                }
            }
        } else {
            let row = &mut out[y * out_row_len..][..out_row_len];
            dw_nhwc_row::<L, FMA>(g, rows, weights_tap_major, bias, clamp, row);
        }
    }
    put_scratch((ring, staging));
}

/// One output row of the channel-last convolution from its three padded input rows.
#[inline(always)]
fn dw_nhwc_row<const L: usize, const FMA: bool>(
    g: &DwGeometry,
    rows: [&[f32]; K],
    weights_tap_major: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out_row: &mut [f32],
) {
    let (c, sw) = (g.channels, g.stride_w);
    // The bounds of every access below, checked once: per-tap slice checks cost a quarter of
    // this loop's instructions on aarch64 (insnprof).
    let row_len = ((g.out_w - 1) * sw + K) * c;
    assert!(rows.iter().all(|r| r.len() >= row_len) && out_row.len() >= g.out_w * c);
    for c0 in block_starts(c, L) {
        assert!(c0 + L <= c);
        let mut w = [[0f32; L]; TAPS];
        for (t, wt) in w.iter_mut().enumerate() {
            wt.copy_from_slice(&weights_tap_major[t * c + c0..][..L]);
        }
        let b: [f32; L] = bias[c0..][..L].try_into().unwrap();
        let lanes = NhwcLanes {
            rows,
            c,
            c0,
            w: &w,
            b,
            clamp,
        };
        // Two outputs at a time: they share input pixels (two of each row's three at stride
        // 1, one at stride 2), so each pixel is loaded once for both.
        let pairs = match sw {
            1 => lanes.pairs::<1, { K + 1 }, FMA>(g.out_w, out_row),
            2 => lanes.pairs::<2, { K + 2 }, FMA>(g.out_w, out_row),
            _ => 0,
        };
        for x in 2 * pairs..g.out_w {
            let mut acc = b;
            for ky in 0..K {
                for kx in 0..K {
                    let s = lanes.pixel(ky, x * sw + kx);
                    for j in 0..L {
                        acc[j] = madd::<FMA>(w[ky * K + kx][j], s[j], acc[j]);
                    }
                }
            }
            store_lanes(out_row, x * c + c0, acc, clamp);
        }
    }
}

/// One channel block of one output row of [`dw_nhwc_row`], whose asserts bound every pixel
/// and output index used here.
struct NhwcLanes<'a, const L: usize> {
    rows: [&'a [f32]; K],
    c: usize,
    c0: usize,
    w: &'a [[f32; L]; TAPS],
    b: [f32; L],
    clamp: Clamp,
}

impl<const L: usize> NhwcLanes<'_, L> {
    /// Channels `c0..c0 + L` of pixel `p` of padded row `ky`.
    #[inline(always)]
    fn pixel(&self, ky: usize, p: usize) -> &[f32; L] {
        let at = p * self.c + self.c0;
        debug_assert!(at + L <= self.rows[ky].len());
        // SAFETY: callers pass p ≤ (out_w − 1)·stride + K − 1, so at + L ≤ row_len ≤
        // rows[ky].len() (asserted by `dw_nhwc_row`); f32 arrays have f32 alignment.
        unsafe { &*(self.rows[ky].as_ptr().add(at) as *const [f32; L]) }
    }

    /// Outputs `2i` and `2i + 1` for every whole pair of the row at stride `SW`, reading the
    /// `N = K + SW` pixels of each input row they cover once. Returns the number of pairs.
    #[inline(always)]
    fn pairs<const SW: usize, const N: usize, const FMA: bool>(
        &self,
        out_w: usize,
        out_row: &mut [f32],
    ) -> usize {
        for i in 0..out_w / 2 {
            let x = 2 * i;
            let (mut a0, mut a1) = (self.b, self.b);
            for ky in 0..K {
                let s: [&[f32; L]; N] = std::array::from_fn(|n| self.pixel(ky, x * SW + n));
                for kx in 0..K {
                    let wt = &self.w[ky * K + kx];
                    for j in 0..L {
                        a0[j] = madd::<FMA>(wt[j], s[kx][j], a0[j]);
                        a1[j] = madd::<FMA>(wt[j], s[kx + SW][j], a1[j]);
                    }
                }
            }
            store_lanes(out_row, x * self.c + self.c0, a0, self.clamp);
            store_lanes(out_row, (x + 1) * self.c + self.c0, a1, self.clamp);
        }
        out_w / 2
    }
}

/// `out[at..at + L] = clamp(acc)`; the caller has checked `at + L <= out.len()`.
#[inline(always)]
fn store_lanes<const L: usize>(out: &mut [f32], at: usize, acc: [f32; L], clamp: Clamp) {
    debug_assert!(at + L <= out.len());
    // SAFETY: in bounds (checked by the caller, see `dw_nhwc_row`'s asserts).
    let d = unsafe { &mut *(out.as_mut_ptr().add(at) as *mut [f32; L]) };
    for j in 0..L {
        d[j] = clamp.apply(acc[j]);
    }
}

/// Lane block for `c` channels: the block size with the fewest native vector operations per
/// pixel (`unit` lanes per native vector, `widest` the largest block tried), ties to the larger.
fn nhwc_lanes(c: usize, widest: usize, unit: usize) -> usize {
    let cost = |l: usize| c.div_ceil(l) * (l / unit).max(1);
    let mut best = 1;
    let mut l = widest;
    while l > 1 {
        if l <= c && (best == 1 || cost(l) < cost(best)) {
            best = l;
        }
        l /= 2;
    }
    best
}

/// Whether a channel-first convolution runs through [`dw_ring`] (vectorized across channels)
/// rather than plane by plane: small output planes, where per-plane overhead dominates
/// (measured on the classifier's shapes: 2×2 and 4×4 planes gain 1.5–3×, 8×8 at stride 1
/// gains 1.5×, 8×8 at stride 2 loses; 16×16 and larger lose many times over).
fn small_plane(g: &DwGeometry) -> bool {
    let pixels = g.out_h * g.out_w;
    pixels <= 16 || (pixels <= 64 && g.stride_h == 1 && g.stride_w == 1)
}

#[inline(always)]
fn dw_dispatch<const FMA: bool, const CF: bool>(
    (widest, unit): (usize, usize),
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    if CF && (!small_plane(g) || g.channels < unit) {
        return dw_nchw_impl::<FMA>(g, input, weights, bias, clamp, out);
    }
    match nhwc_lanes(g.channels, widest, unit) {
        16 => dw_ring::<16, FMA, CF>(g, input, weights, bias, clamp, out),
        8 => dw_ring::<8, FMA, CF>(g, input, weights, bias, clamp, out),
        4 => dw_ring::<4, FMA, CF>(g, input, weights, bias, clamp, out),
        2 => dw_ring::<2, FMA, CF>(g, input, weights, bias, clamp, out),
        _ => dw_ring::<1, FMA, CF>(g, input, weights, bias, clamp, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Max-pool, no padding

/// Geometry of a max-pool over one image without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl PoolGeometry {
    /// Whether every window lies inside the input.
    pub fn is_valid(&self) -> bool {
        let ok = |inp: usize, k: usize, s: usize, out: usize| {
            k >= 1 && s >= 1 && out >= 1 && (out - 1) * s + k <= inp
        };
        self.channels >= 1
            && ok(self.in_h, self.k_h, self.stride_h, self.out_h)
            && ok(self.in_w, self.k_w, self.stride_w, self.out_w)
    }
}

#[inline(always)]
fn maxpool_nhwc_impl(g: &PoolGeometry, input: &[f32], out: &mut [f32]) {
    let c = g.channels;
    for (p, dst) in out.chunks_exact_mut(c).enumerate() {
        let (y, x) = (p / g.out_w, p % g.out_w);
        let at = |ky: usize, kx: usize| {
            let pix = (y * g.stride_h + ky) * g.in_w + x * g.stride_w + kx;
            &input[pix * c..][..c]
        };
        dst.copy_from_slice(at(0, 0));
        for ky in 0..g.k_h {
            for kx in 0..g.k_w {
                if ky + kx == 0 {
                    continue;
                }
                for (d, &s) in dst.iter_mut().zip(at(ky, kx)) {
                    // Compare-select: lowers to a vector max.
                    *d = if s > *d { s } else { *d };
                }
            }
        }
    }
}

/// Channel-first: per channel plane, the max of the window's rows first (contiguous, so it
/// vectorizes), then the max across each window's columns.
#[inline(always)]
fn maxpool_nchw_impl(g: &PoolGeometry, input: &[f32], out: &mut [f32]) {
    let mut row = vec![0f32; g.in_w];
    let planes = input.chunks_exact(g.in_h * g.in_w);
    for (plane, dst) in planes.zip(out.chunks_exact_mut(g.out_h * g.out_w)) {
        for (y, dst_row) in dst.chunks_exact_mut(g.out_w).enumerate() {
            let src_row = |ky: usize| &plane[(y * g.stride_h + ky) * g.in_w..][..g.in_w];
            row.copy_from_slice(src_row(0));
            for ky in 1..g.k_h {
                for (r, &s) in row.iter_mut().zip(src_row(ky)) {
                    *r = if s > *r { s } else { *r };
                }
            }
            for (x, d) in dst_row.iter_mut().enumerate() {
                let window = &row[x * g.stride_w..][..g.k_w];
                *d = window[1..]
                    .iter()
                    .fold(window[0], |m, &v| if v > m { v } else { m });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points with run-time ISA selection

/// Instruction sets the kernels are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    /// x86-64 AVX2 with FMA.
    Avx2,
    /// x86-64 AVX-512F (with AVX2 and FMA).
    Avx512,
}

/// The widest instruction set this CPU runs (checked once).
pub fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avx512f") {
                Isa::Avx512
            } else if avx2 {
                Isa::Avx2
            } else {
                Isa::Baseline
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Isa::Baseline
}

/// `isa`, or the detected one where this CPU lacks it (so no caller can pick an instruction
/// set the CPU does not run).
pub fn usable(isa: Isa) -> Isa {
    isa.min(detected_isa())
}

/// Whether the baseline build fuses multiply-adds (aarch64 always has FMA).
const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

/// Widest channel block and lanes per vector of the baseline build (NEON and SSE2: 4 lanes;
/// NEON's 32 registers hold two vectors per block).
const BASELINE_LANES: (usize, usize) = if cfg!(target_arch = "aarch64") {
    (8, 4)
} else {
    (4, 4)
};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn dw_nchw_avx512(
        g: &DwGeometry,
        i: &[f32],
        w: &[f32],
        b: &[f32],
        c: Clamp,
        o: &mut [f32],
    ) {
        dw_dispatch::<true, true>((16, 8), g, i, w, b, c, o)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn dw_nchw_avx2(g: &DwGeometry, i: &[f32], w: &[f32], b: &[f32], c: Clamp, o: &mut [f32]) {
        dw_dispatch::<true, true>((8, 8), g, i, w, b, c, o)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn dw_nhwc_avx512(
        g: &DwGeometry,
        i: &[f32],
        w: &[f32],
        b: &[f32],
        c: Clamp,
        o: &mut [f32],
    ) {
        dw_dispatch::<true, false>((16, 8), g, i, w, b, c, o)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn dw_nhwc_avx2(g: &DwGeometry, i: &[f32], w: &[f32], b: &[f32], c: Clamp, o: &mut [f32]) {
        dw_dispatch::<true, false>((8, 8), g, i, w, b, c, o)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn maxpool_nhwc_avx512(g: &PoolGeometry, i: &[f32], o: &mut [f32]) {
        maxpool_nhwc_impl(g, i, o)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn maxpool_nhwc_avx2(g: &PoolGeometry, i: &[f32], o: &mut [f32]) {
        maxpool_nhwc_impl(g, i, o)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn maxpool_nchw_avx512(g: &PoolGeometry, i: &[f32], o: &mut [f32]) {
        maxpool_nchw_impl(g, i, o)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn maxpool_nchw_avx2(g: &PoolGeometry, i: &[f32], o: &mut [f32]) {
        maxpool_nchw_impl(g, i, o)
    }
}

fn check_dw(g: &DwGeometry, input: &[f32], weights: &[f32], bias: &[f32], out: &[f32]) {
    assert!(g.is_valid(), "invalid depthwise geometry {g:?}");
    assert_eq!(input.len(), g.input_len(), "depthwise input length");
    assert_eq!(weights.len(), g.channels * TAPS, "depthwise weights length");
    assert_eq!(bias.len(), g.channels, "depthwise bias length");
    assert_eq!(out.len(), g.output_len(), "depthwise output length");
}

/// 3×3 depthwise convolution of one NCHW image: `weights` is tap-major `[3][3][C]`, `out` is
/// `[C][out_h][out_w]`, each output clamped by `clamp`.
pub fn depthwise3x3_nchw(
    isa: Isa,
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    check_dw(g, input, weights, bias, out);
    match usable(isa) {
        // SAFETY: `isa` comes from `detected_isa` (or a narrower choice), so the CPU has the
        // features these functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::dw_nchw_avx512(g, input, weights, bias, clamp, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dw_nchw_avx2(g, input, weights, bias, clamp, out) },
        #[cfg(target_arch = "aarch64")]
        _ if g.stride_h == 1 && g.stride_w == 1 && g.out_w.is_multiple_of(4) && !small_plane(g) => {
            neon::depthwise3x3_nchw_s1(g, input, weights, bias, clamp, out)
        }
        _ => dw_dispatch::<BASELINE_FMA, true>(BASELINE_LANES, g, input, weights, bias, clamp, out),
    }
}

/// 3×3 depthwise convolution of one NHWC image: `weights` is tap-major `[3][3][C]`, `out` is
/// `[out_h][out_w][C]`, each output clamped by `clamp`.
pub fn depthwise3x3_nhwc(
    isa: Isa,
    g: &DwGeometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    check_dw(g, input, weights, bias, out);
    match usable(isa) {
        // SAFETY: as in `depthwise3x3_nchw`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::dw_nhwc_avx512(g, input, weights, bias, clamp, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dw_nhwc_avx2(g, input, weights, bias, clamp, out) },
        #[cfg(target_arch = "aarch64")]
        _ if g.channels >= 4 => neon::depthwise3x3_nhwc(g, input, weights, bias, clamp, out),
        _ => {
            dw_dispatch::<BASELINE_FMA, false>(BASELINE_LANES, g, input, weights, bias, clamp, out)
        }
    }
}

fn check_pool(g: &PoolGeometry, input: &[f32], out: &[f32]) {
    assert!(g.is_valid(), "invalid max-pool geometry {g:?}");
    assert_eq!(
        input.len(),
        g.channels * g.in_h * g.in_w,
        "max-pool input length"
    );
    assert_eq!(
        out.len(),
        g.channels * g.out_h * g.out_w,
        "max-pool output length"
    );
}

/// Max-pool of one NHWC image without padding.
pub fn maxpool_nhwc(isa: Isa, g: &PoolGeometry, input: &[f32], out: &mut [f32]) {
    check_pool(g, input, out);
    match usable(isa) {
        // SAFETY: as in `depthwise3x3_nchw`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::maxpool_nhwc_avx512(g, input, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::maxpool_nhwc_avx2(g, input, out) },
        _ => maxpool_nhwc_impl(g, input, out),
    }
}

/// Max-pool of one NCHW image without padding.
pub fn maxpool_nchw(isa: Isa, g: &PoolGeometry, input: &[f32], out: &mut [f32]) {
    check_pool(g, input, out);
    match usable(isa) {
        // SAFETY: as in `depthwise3x3_nchw`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::maxpool_nchw_avx512(g, input, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::maxpool_nchw_avx2(g, input, out) },
        _ => maxpool_nchw_impl(g, input, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Pointwise (1×1) convolution, channel-last

/// The weights of a pointwise convolution in the order the aarch64 kernel streams them: for
/// each block of output channels (`blocks`: start and width, 16, or 8 for a remainder of at
/// most 8 channels; a last block overlaps the previous one where the widths do not add up to
/// `co`), `[k][width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwisePack {
    /// Input channels.
    pub k: usize,
    /// Output channels.
    pub co: usize,
    pub blocks: Vec<(usize, usize)>,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl PointwisePack {
    /// Packs `weights` given as `[co][k]` (ONNX's `[O, I]`); `co` ≥ 16.
    pub fn new(k: usize, co: usize, weights_co_k: &[f32], bias: &[f32]) -> PointwisePack {
        assert_eq!(weights_co_k.len(), k * co, "pointwise weights length");
        assert_eq!(bias.len(), co, "pointwise bias length");
        assert!(co >= 16, "pointwise blocks need 16 output channels");
        let mut blocks: Vec<(usize, usize)> = (0..co / 16).map(|b| (b * 16, 16)).collect();
        match co % 16 {
            0 => {}
            r if r <= 8 => blocks.push((co - 8, 8)),
            _ => blocks.push((co - 16, 16)),
        }
        let mut weights = Vec::with_capacity(blocks.iter().map(|b| b.1 * k).sum());
        for &(c0, width) in &blocks {
            for i in 0..k {
                weights.extend((0..width).map(|j| weights_co_k[(c0 + j) * k + i]));
            }
        }
        PointwisePack {
            k,
            co,
            blocks,
            weights,
            bias: bias.to_vec(),
        }
    }

    /// Whether the aarch64 kernel's shape constraints hold (input channels in fours).
    pub fn fits_neon(&self) -> bool {
        self.k >= 4 && self.k.is_multiple_of(4)
    }

    /// Weight `(j, i)`: output channel `j`, input channel `i`.
    pub fn weight(&self, j: usize, i: usize) -> f32 {
        let mut at = 0;
        for &(c0, width) in &self.blocks {
            if (c0..c0 + width).contains(&j) {
                return self.weights[at + i * width + j - c0];
            }
            at += width * self.k;
        }
        unreachable!("output channel {j} of {}", self.co)
    }
}

/// Where a pointwise convolution's channels are: channel-first (`[c][pixels]`) or channel-last
/// (`[pixels][c]`), for its input and its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PointwiseLayout {
    pub input_cf: bool,
    pub output_cf: bool,
}

/// Pointwise convolution of `px` pixels: `out[p][j] = clamp(bias[j] + Σ_i x[p][i] · w[j][i])`
/// with `x` and `out` indexed as `layout` says. The NEON kernel on aarch64 (where the shape
/// fits), else plain loops.
pub fn pointwise(
    pack: &PointwisePack,
    layout: PointwiseLayout,
    px: usize,
    x: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    #[cfg(target_arch = "aarch64")]
    if pack.fits_neon() && px >= 4 {
        return neon_pointwise::pointwise(pack, layout, px, x, clamp, out);
    }
    let (k, co) = (pack.k, pack.co);
    assert!(
        x.len() == px * k && out.len() == px * co,
        "pointwise lengths"
    );
    let xi = |p: usize, i: usize| {
        if layout.input_cf {
            x[i * px + p]
        } else {
            x[p * k + i]
        }
    };
    // `[co][k]`, unpacked once rather than looked up per multiply-add.
    let w: Vec<f32> = (0..co * k).map(|n| pack.weight(n / k, n % k)).collect();
    for p in 0..px {
        for (j, wj) in w.chunks_exact(k).enumerate() {
            let acc = (0..k).fold(pack.bias[j], |a, i| {
                madd::<BASELINE_FMA>(xi(p, i), wj[i], a)
            });
            let at = if layout.output_cf {
                j * px + p
            } else {
                p * co + j
            };
            out[at] = clamp.apply(acc);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution as im2col + pointwise

/// Geometry of a dense (group 1) 2-D convolution over one channel-first image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeometry {
    /// Rows of the patch matrix: one per (channel, tap), rounded up to a multiple of four
    /// (the extra rows are zeros, with zero weights).
    pub fn patch_rows(&self) -> usize {
        (self.channels * self.k_h * self.k_w).next_multiple_of(4)
    }

    pub fn output_pixels(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// The channel-first patch matrix of one NCHW image: row `(c·k_h + ky)·k_w + kx` holds, for
/// every output pixel, the input under tap `(ky, kx)` of channel `c` (zero on padding).
pub fn im2col_nchw(g: &ConvGeometry, input: &[f32], out: &mut [f32]) {
    let px = g.output_pixels();
    assert_eq!(
        input.len(),
        g.channels * g.in_h * g.in_w,
        "im2col input length"
    );
    assert_eq!(out.len(), g.patch_rows() * px, "im2col output length");
    let (rows, pad) = out.split_at_mut(g.channels * g.k_h * g.k_w * px);
    pad.fill(0.0);
    // The image stems' case (3×3, stride 2, one column of padding): the three taps of a row
    // are the input row's odd columns shifted by one, its even and its odd columns, split in
    // one pass (a deinterleaving load on NEON).
    let stem = g.k_w == 3 && g.stride_w == 2 && g.pad_left == 1 && g.in_w == 2 * g.out_w;
    let row_len = g.k_w * px;
    for (r, dst) in rows
        .chunks_exact_mut(if stem { row_len } else { px })
        .enumerate()
    {
        let (c, ky, kx) = if stem {
            (r / g.k_h, r % g.k_h, 0)
        } else {
            (r / (g.k_h * g.k_w), r / g.k_w % g.k_h, r % g.k_w)
        };
        let plane = &input[c * g.in_h * g.in_w..][..g.in_h * g.in_w];
        for y in 0..g.out_h {
            let iy = (y * g.stride_h + ky).wrapping_sub(g.pad_top);
            let src = (iy < g.in_h).then(|| &plane[iy * g.in_w..][..g.in_w]);
            if stem {
                let (d0, rest) = dst[y * g.out_w..].split_at_mut(px);
                let (d1, d2) = rest.split_at_mut(px);
                stem_row(
                    src,
                    &mut d0[..g.out_w],
                    &mut d1[..g.out_w],
                    &mut d2[..g.out_w],
                );
            } else {
                tap_row(g, src, kx, &mut dst[y * g.out_w..][..g.out_w]);
            }
        }
    }
}

/// A dense convolution of one NCHW image through its patch matrix (built in this thread's
/// scratch) and the pointwise kernel: `pack` holds the weights `[co][patch rows]`, `out` is
/// `[co][out_h][out_w]`.
pub fn conv_im2col(
    g: &ConvGeometry,
    pack: &PointwisePack,
    input: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    let len = g.patch_rows() * g.output_pixels();
    let (mut patches, spare) = take_scratch(len, 0);
    im2col_nchw(g, input, &mut patches[..len]);
    let layout = PointwiseLayout {
        input_cf: true,
        output_cf: true,
    };
    pointwise(pack, layout, g.output_pixels(), &patches[..len], clamp, out);
    put_scratch((patches, spare));
}

/// One output row of the three taps of a 3×3 stride-2 stem (`src`: the input row, `None` on
/// padding): `d1[x] = src[2x]`, `d2[x] = src[2x + 1]`, `d0[x] = src[2x − 1]` (0 at x = 0).
#[inline(always)]
fn stem_row(src: Option<&[f32]>, d0: &mut [f32], d1: &mut [f32], d2: &mut [f32]) {
    let Some(src) = src else {
        for d in [d0, d1, d2] {
            d.fill(0.0);
        }
        return;
    };
    let n = d1.len();
    d0[0] = 0.0;
    for (x, pair) in src[..2 * n].chunks_exact(2).enumerate() {
        d1[x] = pair[0];
        d2[x] = pair[1];
    }
    d0[1..].copy_from_slice(&d2[..n - 1]);
}

/// One output row of tap column `kx` of the patch matrix (`src`: the input row, `None` on
/// padding).
fn tap_row(g: &ConvGeometry, src: Option<&[f32]>, kx: usize, d: &mut [f32]) {
    let Some(src) = src else {
        d.fill(0.0);
        return;
    };
    // Output columns whose tap column lies inside the image.
    let first = g
        .pad_left
        .saturating_sub(kx)
        .div_ceil(g.stride_w)
        .min(g.out_w);
    let last =
        ((g.in_w + g.pad_left).saturating_sub(kx + 1) / g.stride_w + 1).clamp(first, g.out_w);
    d[..first].fill(0.0);
    d[last..].fill(0.0);
    if first < last {
        let x0 = first * g.stride_w + kx - g.pad_left;
        for (v, s) in d[first..last]
            .iter_mut()
            .zip(src[x0..].iter().step_by(g.stride_w))
        {
            *v = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift32 in [-1, 1).
    fn noise(seed: &mut u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 17;
                *seed ^= *seed << 5;
                (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Direct definition: `out[c][y][x] = clamp(b[c] + Σ w[c][ky][kx] · in[c][iy][ix])`.
    fn reference(g: &DwGeometry, x: &[f32], w: &[f32], b: &[f32], clamp: Clamp) -> Vec<f32> {
        let mut out = vec![0.0; g.output_len()];
        for c in 0..g.channels {
            for y in 0..g.out_h {
                for xo in 0..g.out_w {
                    let mut acc = b[c] as f64;
                    for ky in 0..K {
                        for kx in 0..K {
                            let iy = (y * g.stride_h + ky) as isize - g.pad_top as isize;
                            let ix = (xo * g.stride_w + kx) as isize - g.pad_left as isize;
                            if iy >= 0 && ix >= 0 && iy < g.in_h as isize && ix < g.in_w as isize {
                                let v = x[(c * g.in_h + iy as usize) * g.in_w + ix as usize];
                                acc += (w[c * TAPS + ky * K + kx] * v) as f64;
                            }
                        }
                    }
                    out[(c * g.out_h + y) * g.out_w + xo] = clamp.apply(acc as f32);
                }
            }
        }
        out
    }

    fn nchw_to_nhwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..c * hw).map(|i| x[(i % c) * hw + i / c]).collect()
    }

    fn isas() -> Vec<Isa> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| usable(i) == i)
            .collect()
    }

    /// Every stride 1–3, padding 0–2 on each side and small odd and even sizes, both layouts,
    /// every instruction set this CPU runs, against the direct definition.
    #[test]
    fn depthwise_matches_definition_on_edge_geometries() {
        let mut seed = 0x1234_5678;
        let mut cases = 0;
        for (channels, in_h, in_w) in [
            (1usize, 1usize, 1usize),
            (3, 2, 5),
            (9, 7, 4),
            (20, 5, 13),
            (37, 9, 33),
        ] {
            for stride in 1..=3 {
                for (pt, pl, pb, pr) in [(0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 1, 1), (2, 1, 0, 2)] {
                    let out_h = (in_h + pt + pb).saturating_sub(K) / stride + 1;
                    let out_w = (in_w + pl + pr).saturating_sub(K) / stride + 1;
                    let g = DwGeometry {
                        channels,
                        in_h,
                        in_w,
                        stride_h: stride,
                        stride_w: stride,
                        pad_top: pt,
                        pad_left: pl,
                        out_h,
                        out_w,
                    };
                    if in_h + pt + pb < K || in_w + pl + pr < K || !g.is_valid() {
                        continue;
                    }
                    let x = noise(&mut seed, g.input_len());
                    let w = noise(&mut seed, channels * TAPS);
                    let b = noise(&mut seed, channels);
                    let clamp = Clamp { lo: -0.5, hi: 0.7 };
                    let want = reference(&g, &x, &w, &b, clamp);
                    let wl = nchw_to_nhwc(&w, channels, TAPS);
                    let xl = nchw_to_nhwc(&x, channels, in_h * in_w);
                    for isa in isas() {
                        let mut got = vec![f32::NAN; g.output_len()];
                        depthwise3x3_nchw(isa, &g, &x, &wl, &b, clamp, &mut got);
                        let d = max_diff(&got, &want);
                        assert!(d <= 1e-5, "NCHW {isa:?} {g:?}: {d}");
                        let mut got = vec![f32::NAN; g.output_len()];
                        depthwise3x3_nhwc(isa, &g, &xl, &wl, &b, clamp, &mut got);
                        let want_l = nchw_to_nhwc(&want, channels, out_h * out_w);
                        let d = max_diff(&got, &want_l);
                        assert!(d <= 1e-5, "NHWC {isa:?} {g:?}: {d}");
                    }
                    // Every channel block width (AVX-512's 16 included) on any CPU.
                    for lanes in [(16, 8), (8, 8), (8, 4), (4, 4), (2, 2)] {
                        let mut got = vec![f32::NAN; g.output_len()];
                        dw_dispatch::<false, true>(lanes, &g, &x, &wl, &b, clamp, &mut got);
                        let d = max_diff(&got, &want);
                        assert!(d <= 1e-5, "NCHW lanes {lanes:?} {g:?}: {d}");
                        let mut got = vec![f32::NAN; g.output_len()];
                        dw_dispatch::<false, false>(lanes, &g, &xl, &wl, &b, clamp, &mut got);
                        let d = max_diff(&got, &nchw_to_nhwc(&want, channels, out_h * out_w));
                        assert!(d <= 1e-5, "NHWC lanes {lanes:?} {g:?}: {d}");
                    }
                    cases += 1;
                }
            }
        }
        assert!(cases > 40, "{cases}");
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                if x.is_nan() {
                    f32::INFINITY
                } else {
                    (x - y).abs()
                }
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn maxpool_matches_definition() {
        let mut seed = 99;
        for (c, h, w, k, s) in [
            (1, 2, 2, 2, 2),
            (28, 8, 6, 2, 2),
            (5, 7, 7, 3, 2),
            (17, 5, 9, 3, 1),
        ] {
            let g = PoolGeometry {
                channels: c,
                in_h: h,
                in_w: w,
                k_h: k,
                k_w: k,
                stride_h: s,
                stride_w: s,
                out_h: (h - k) / s + 1,
                out_w: (w - k) / s + 1,
            };
            let x = noise(&mut seed, c * h * w);
            let (in_plane, out_plane) = (h * w, g.out_h * g.out_w);
            for channel_last in [true, false] {
                // Element index of (channel, pixel) in either layout.
                let at = |ch: usize, pix: usize, plane: usize| {
                    if channel_last {
                        pix * c + ch
                    } else {
                        ch * plane + pix
                    }
                };
                let mut want = vec![f32::NEG_INFINITY; c * out_plane];
                for ch in 0..c {
                    for p in 0..out_plane {
                        let (y, xo) = (p / g.out_w, p % g.out_w);
                        let v = &mut want[at(ch, p, out_plane)];
                        for ky in 0..k {
                            for kx in 0..k {
                                let pix = (y * s + ky) * w + xo * s + kx;
                                *v = v.max(x[at(ch, pix, in_plane)]);
                            }
                        }
                    }
                }
                for isa in isas() {
                    let mut got = vec![f32::NAN; want.len()];
                    if channel_last {
                        maxpool_nhwc(isa, &g, &x, &mut got);
                    } else {
                        maxpool_nchw(isa, &g, &x, &mut got);
                    }
                    assert_eq!(got, want, "{isa:?} {g:?} channel_last={channel_last}");
                }
            }
        }
    }

    #[test]
    fn lane_blocks_follow_the_vector_width() {
        // AVX-512 (16 lanes, 8 per 256-bit unit): 24 channels are three 8-lane blocks.
        assert_eq!(nhwc_lanes(24, 16, 8), 8);
        assert_eq!(nhwc_lanes(96, 16, 8), 16);
        assert_eq!(nhwc_lanes(36, 8, 8), 8);
        assert_eq!(nhwc_lanes(3, 8, 8), 2);
        assert_eq!(block_starts(42, 16).collect::<Vec<_>>(), [0, 16, 26]);
        assert_eq!(block_starts(32, 16).collect::<Vec<_>>(), [0, 16]);
    }

    /// `out[p][j] = clamp(b[j] + Σ_i x[p][i] · w[j][i])` in f64, laid out as `layout` says.
    fn pointwise_reference(
        layout: PointwiseLayout,
        px: usize,
        k: usize,
        co: usize,
        (x, w, b): (&[f32], &[f32], &[f32]),
        clamp: Clamp,
    ) -> Vec<f32> {
        let mut out = vec![0.0; px * co];
        for p in 0..px {
            for j in 0..co {
                let mut acc = b[j] as f64;
                for i in 0..k {
                    let v = if layout.input_cf {
                        x[i * px + p]
                    } else {
                        x[p * k + i]
                    };
                    acc += (v * w[j * k + i]) as f64;
                }
                let at = if layout.output_cf {
                    j * px + p
                } else {
                    p * co + j
                };
                out[at] = clamp.apply(acc as f32);
            }
        }
        out
    }

    /// Every layout, with and without a clamp, on shapes that hit the kernel's edges: pixel
    /// counts that are not a multiple of four (the last tile overlaps), channel counts with an
    /// 8-wide or an overlapping 16-wide last block, input channels in odd fours (the single
    /// step after the double steps), and the classifier's own sizes.
    #[test]
    fn pointwise_matches_definition_in_every_layout() {
        let mut seed = 0x9e37_79b9;
        let relu6 = Clamp { lo: 0.0, hi: 6.0 };
        let mut cases = 0;
        for (px, k, co) in [
            (4usize, 4usize, 16usize),
            (5, 8, 17),
            (6, 12, 20),
            (7, 20, 40),
            (16, 64, 24),
            (9, 28, 33),
            (1024, 16, 96),
            (4, 320, 1280),
        ] {
            // Weights scaled as a trained network's are (outputs of order 1 whatever k).
            let scale = 1.0 / (k as f32).sqrt();
            let w: Vec<f32> = noise(&mut seed, k * co).iter().map(|v| v * scale).collect();
            let (x, b) = (noise(&mut seed, px * k), noise(&mut seed, co));
            let pack = PointwisePack::new(k, co, &w, &b);
            for (input_cf, output_cf) in
                [(false, false), (false, true), (true, false), (true, true)]
            {
                let layout = PointwiseLayout {
                    input_cf,
                    output_cf,
                };
                for clamp in [Clamp::NONE, relu6] {
                    let want = pointwise_reference(layout, px, k, co, (&x, &w, &b), clamp);
                    let mut got = vec![f32::NAN; px * co];
                    pointwise(&pack, layout, px, &x, clamp, &mut got);
                    let d = max_diff(&got, &want);
                    assert!(
                        d <= 1e-5,
                        "{px}×{k}→{co} {layout:?} {clamp:?}: max diff {d}"
                    );
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 64);
    }

    #[test]
    fn pointwise_blocks_cover_every_output_channel() {
        let blocks = |co: usize| {
            let w: Vec<f32> = (0..3 * co).map(|n| n as f32).collect();
            let pack = PointwisePack::new(3, co, &w, &vec![0.0; co]);
            // Every weight reads back from its block.
            for j in 0..co {
                for i in 0..3 {
                    assert_eq!(
                        pack.weight(j, i),
                        w[j * 3 + i],
                        "co {co}: weight ({j}, {i})"
                    );
                }
            }
            pack.blocks
        };
        assert_eq!(blocks(16), [(0, 16)]);
        assert_eq!(blocks(24), [(0, 16), (16, 8)]);
        assert_eq!(blocks(17), [(0, 16), (9, 8)]);
        assert_eq!(blocks(30), [(0, 16), (14, 16)]);
        assert_eq!(blocks(96), (0..6).map(|b| (16 * b, 16)).collect::<Vec<_>>());
    }

    /// The patch matrix against its definition (stems' 3×3 stride-2 fast path and the general
    /// one), and a convolution through it against the direct sum.
    #[test]
    fn im2col_convolution_matches_definition() {
        let mut seed = 0x0bad_cafe;
        let geometry =
            |channels, (in_h, in_w), (k_h, k_w), stride, (pad_top, pad_left), (out_h, out_w)| {
                ConvGeometry {
                    channels,
                    in_h,
                    in_w,
                    k_h,
                    k_w,
                    stride_h: stride,
                    stride_w: stride,
                    pad_top,
                    pad_left,
                    out_h,
                    out_w,
                }
            };
        for g in [
            geometry(3, (64, 64), (3, 3), 2, (1, 1), (32, 32)),
            geometry(3, (8, 8), (3, 3), 2, (1, 1), (4, 4)),
            geometry(2, (5, 7), (3, 3), 1, (1, 1), (5, 7)),
            geometry(1, (6, 6), (2, 2), 2, (0, 0), (3, 3)),
            geometry(3, (9, 9), (3, 3), 2, (0, 1), (4, 5)),
        ] {
            let x = noise(&mut seed, g.channels * g.in_h * g.in_w);
            let mut patches = vec![f32::NAN; g.patch_rows() * g.output_pixels()];
            im2col_nchw(&g, &x, &mut patches);
            let px = g.output_pixels();
            for (r, row) in patches.chunks_exact(px).enumerate() {
                let taps = g.k_h * g.k_w;
                for (p, &v) in row.iter().enumerate() {
                    let (c, ky, kx) = (r / taps, r % taps / g.k_w, r % g.k_w);
                    let iy = ((p / g.out_w) * g.stride_h + ky).wrapping_sub(g.pad_top);
                    let ix = ((p % g.out_w) * g.stride_w + kx).wrapping_sub(g.pad_left);
                    let want = if c < g.channels && iy < g.in_h && ix < g.in_w {
                        x[(c * g.in_h + iy) * g.in_w + ix]
                    } else {
                        0.0
                    };
                    assert_eq!(v, want, "{g:?}: row {r}, pixel {p}");
                }
            }
            // 16 output channels through the pointwise kernel (channel-first in and out).
            let (k, rows, co) = (g.channels * g.k_h * g.k_w, g.patch_rows(), 16);
            let w = noise(&mut seed, co * k);
            let padded: Vec<f32> = (0..co * rows)
                .map(|n| {
                    if n % rows < k {
                        w[n / rows * k + n % rows]
                    } else {
                        0.0
                    }
                })
                .collect();
            let pack = PointwisePack::new(rows, co, &padded, &vec![0.5; co]);
            let layout = PointwiseLayout {
                input_cf: true,
                output_cf: true,
            };
            let mut got = vec![f32::NAN; co * px];
            pointwise(&pack, layout, px, &patches, Clamp::NONE, &mut got);
            let want = pointwise_reference(
                layout,
                px,
                rows,
                co,
                (&patches, &padded, &[0.5; 16]),
                Clamp::NONE,
            );
            let d = max_diff(&got, &want);
            assert!(d <= 1e-5, "{g:?}: max diff {d}");
        }
    }
}
