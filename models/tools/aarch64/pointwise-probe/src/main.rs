//! The classifier's pointwise convolutions (channel-last, [pixels][channels]) through a NEON
//! kernel: a 4-pixel × 16-channel tile of accumulators, four input channels per step, each
//! input value used by lane (`vfmaq_laneq_f32`). Output channels are padded to 16 (24 → 32).
//! Runs every layer `RUNS` times; see Cargo.toml for how it is counted.
#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;

const SHAPES: &[(usize, usize, usize)] = &[
    (1024, 32, 16), (1024, 16, 96),
    (256, 96, 24), (256, 24, 144), (256, 144, 24), (256, 24, 144),
    (64, 144, 32), (64, 32, 192), (64, 192, 32), (64, 32, 192), (64, 192, 32), (64, 32, 192),
    (16, 192, 64), (16, 64, 384), (16, 384, 64), (16, 64, 384), (16, 384, 64), (16, 64, 384),
    (16, 384, 64), (16, 64, 384), (16, 384, 96), (16, 96, 576), (16, 576, 96), (16, 96, 576),
    (16, 576, 96), (16, 96, 576),
    (4, 576, 160), (4, 160, 960), (4, 960, 160), (4, 160, 960), (4, 960, 160), (4, 160, 960),
    (4, 960, 320), (4, 320, 1280),
];

/// Weights packed per block of 16 output channels: [block][ci][16] (co multiple of 16 assumed
/// here, 24 padded to 32 for the experiment).
struct Pw { k: usize, co: usize, w: Vec<f32>, b: Vec<f32> }

#[cfg(target_arch = "aarch64")]
macro_rules! lane_step {
    ($a:ident, $w:ident, $xv:ident, $l:literal) => {
        let wv = vld1q_f32_x4($w);
        $w = $w.add(16);
        for p in 0..4 {
            $a[p][0] = vfmaq_laneq_f32::<$l>($a[p][0], wv.0, $xv[p]);
            $a[p][1] = vfmaq_laneq_f32::<$l>($a[p][1], wv.1, $xv[p]);
            $a[p][2] = vfmaq_laneq_f32::<$l>($a[p][2], wv.2, $xv[p]);
            $a[p][3] = vfmaq_laneq_f32::<$l>($a[p][3], wv.3, $xv[p]);
        }
    };
}

#[cfg(target_arch = "aarch64")]
#[inline(never)]
unsafe fn tile4(x: *const f32, k: usize, wblk: *const f32, bias: *const f32, out: *mut f32, co: usize) {
    let b = vld1q_f32_x4(bias);
    let mut a = [[b.0, b.1, b.2, b.3]; 4];
    let mut w = wblk;
    let mut ci = 0;
    while ci + 4 <= k {
        let xv = [vld1q_f32(x.add(ci)), vld1q_f32(x.add(k + ci)), vld1q_f32(x.add(2 * k + ci)), vld1q_f32(x.add(3 * k + ci))];
        lane_step!(a, w, xv, 0);
        lane_step!(a, w, xv, 1);
        lane_step!(a, w, xv, 2);
        lane_step!(a, w, xv, 3);
        ci += 4;
    }
    while ci < k {
        let wv = vld1q_f32_x4(w);
        w = w.add(16);
        for p in 0..4 {
            let s = *x.add(p * k + ci);
            a[p][0] = vfmaq_n_f32(a[p][0], wv.0, s);
            a[p][1] = vfmaq_n_f32(a[p][1], wv.1, s);
            a[p][2] = vfmaq_n_f32(a[p][2], wv.2, s);
            a[p][3] = vfmaq_n_f32(a[p][3], wv.3, s);
        }
        ci += 1;
    }
    let lo = vdupq_n_f32(0.0);
    let hi = vdupq_n_f32(6.0);
    for p in 0..4 {
        let o = out.add(p * co);
        let r = float32x4x4_t(
            vminq_f32(vmaxq_f32(a[p][0], lo), hi),
            vminq_f32(vmaxq_f32(a[p][1], lo), hi),
            vminq_f32(vmaxq_f32(a[p][2], lo), hi),
            vminq_f32(vmaxq_f32(a[p][3], lo), hi),
        );
        vst1q_f32_x4(o, r);
    }
}

fn main() {
    let runs: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let layers: Vec<(usize, Pw, Vec<f32>, Vec<f32>)> = SHAPES
        .iter()
        .map(|&(px, k, co)| {
            let co = co.next_multiple_of(16);
            let pw = Pw { k, co, w: (0..k * co).map(|i| (i % 7) as f32 * 0.01).collect(), b: vec![0.1; co] };
            (px, pw, (0..px * k).map(|i| (i % 5) as f32 * 0.1).collect(), vec![0f32; px * co])
        })
        .collect();
    let mut layers = layers;
    let mut sum = 0f32;
    for _ in 0..runs {
        for (px, pw, x, out) in layers.iter_mut() {
            #[cfg(target_arch = "aarch64")]
            unsafe {
                for blk in 0..pw.co / 16 {
                    let wblk = pw.w.as_ptr().add(blk * pw.k * 16);
                    for p0 in (0..*px).step_by(4) {
                        tile4(x.as_ptr().add(p0 * pw.k), pw.k, wblk, pw.b.as_ptr().add(blk * 16), out.as_mut_ptr().add(p0 * pw.co + blk * 16), pw.co);
                    }
                }
            }
            sum += out[0];
        }
    }
    println!("{sum}");
}
