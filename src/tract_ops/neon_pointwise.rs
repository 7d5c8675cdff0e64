//! aarch64 pointwise (1×1) convolution: hand-written `asm!` tiles (counted under qemu:
//! docs/performance.md).
//!
//! One tile is 4 pixels × 16 output channels, accumulated in v0–v15 (`v(4p + j)`: pixel `p`,
//! output channels `4j .. 4j + 4`). Each step takes four input channels: their values for the
//! four pixels are loaded into v16–v19, then for each input channel its 16 weights go into
//! v20–v23 or v24–v27 and 16 `fmla` by lane follow. Channel-last input: v(16 + p) holds pixel
//! `p`'s four channels (lane = channel). Channel-first input: v(16 + c) holds channel `c`'s four
//! pixels (lane = pixel). Channel-first output: each 4 × 4 block is transposed before it is
//! stored, so that every register holds one output channel's four pixels.

use super::Clamp;
use std::arch::aarch64::*;
use std::arch::asm;

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

/// Four input channels of the four pixels into v16–v19, channel-last input: v(16 + p) = pixel
/// p's channels (four post-indexed pointers).
macro_rules! pw_inputs_cl {
    () => {
        concat!(
            "ldr q16, [{x0}], #16\n",
            "ldr q17, [{x1}], #16\n",
            "ldr q18, [{x2}], #16\n",
            "ldr q19, [{x3}], #16\n",
        )
    };
}

/// Four input channels of the four pixels into v16–v19, channel-first input: v(16 + c) =
/// channel c's pixels (`{x0}` steps by `{xs}` bytes, one channel plane).
macro_rules! pw_inputs_cf {
    () => {
        concat!(
            "ld1 {{v16.4s}}, [{x0}], {xs}\n",
            "ld1 {{v17.4s}}, [{x0}], {xs}\n",
            "ld1 {{v18.4s}}, [{x0}], {xs}\n",
            "ld1 {{v19.4s}}, [{x0}], {xs}\n",
        )
    };
}

/// One step of four input channels, channel-last input: v(16 + p) = pixel p's channels.
macro_rules! pw_step_cl {
    () => {
        concat!(
            pw_inputs_cl!(),
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
            pw_inputs_cf!(),
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
            pw_inputs_cl!(),
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
            pw_inputs_cf!(),
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
