//! The large-block pool (`emonet::alloc`) installed as this test process's allocator, as the
//! `emonet` binary installs it: CenterFace's frames (`detector.range = "far"`, the default) are
//! served from the pool and reuse its blocks, so it stops growing after the first frame and
//! spans little more than what is alive at once.

mod common;

use emonet::alloc::{self, LargeBlockPool};
use emonet::config::{DetectorRange, FAR_RANGE_DETECTOR_FILE};
use emonet::vision::{DetectorSettings, FaceDetector};

#[global_allocator]
static ALLOCATOR: LargeBlockPool = LargeBlockPool;

const MIB: f64 = (1 << 20) as f64;

#[test]
fn far_detection_frames_reuse_the_pools_blocks() {
    let settings = DetectorSettings {
        range: DetectorRange::Far,
        model: common::model(FAR_RANGE_DETECTOR_FILE),
        ..DetectorSettings::default()
    };
    let detector = FaceDetector::load(&settings).expect("load CenterFace");
    emonet::cpu::release_freed_memory();
    let frames: Vec<_> = ["0000.jpg", "0004.jpg", "0010.jpg"]
        .iter()
        .map(|f| emonet::frame::read_image(&common::root().join("samples/frames").join(f)).unwrap())
        .collect();
    let at_rest = alloc::stats();
    for frame in frames.iter().cycle().take(3) {
        detector.detect(frame).unwrap();
    }
    let warm = alloc::stats();
    for frame in frames.iter().cycle().take(30) {
        detector.detect(frame).unwrap();
    }
    let s = alloc::stats();
    let frames_alive = s.peak_in_use - warm.in_use;
    eprintln!(
        "pool: {:.1} MiB in use at rest (the model), {:.1} MiB after the first frames (their \
         buffers); at most {:.1} MiB in use, {:.1} MiB spanned; top after 3 frames {:.1} MiB, \
         after 33 {:.1} MiB",
        at_rest.in_use as f64 / MIB,
        warm.in_use as f64 / MIB,
        s.peak_in_use as f64 / MIB,
        s.peak_top as f64 / MIB,
        warm.peak_top as f64 / MIB,
        s.peak_top as f64 / MIB
    );
    assert!(
        frames_alive > 4 << 20,
        "CenterFace's activations are not in the pool: {s:?}"
    );
    assert_eq!(s.in_use, warm.in_use, "frames left blocks behind: {s:?}");
    assert!(
        s.peak_top <= warm.peak_top + (1 << 20),
        "the pool grew after the first frames: {warm:?} -> {s:?}"
    );
    // The footprint against the most ever alive at once (measured: 1.23).
    assert!(
        s.peak_top as f64 <= 1.35 * s.peak_in_use as f64,
        "fragmented: {s:?}"
    );
}
