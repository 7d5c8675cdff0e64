//! What the CPU offers the inference kernels. tract-linalg picks its matrix kernels at run time
//! (on aarch64: NEON f32 kernels; for int8, plain NEON `arm64simd_mmm_i32_8x8` vs the
//! dot-product variant on Pi 5 / Orin),
//! so operators want to see in the log which class of board they are on. Also the one reader of
//! `/proc/<pid>/status` (peak and current memory, for `emonet bench` and the tests), and the call
//! that hands freed memory back after start-up.

/// The SIMD features that matter for tract's kernels, e.g. `["neon", "dotprod"]`.
pub fn features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.1", std::arch::is_x86_feature_detected!("sse4.1")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
        ] {
            if on {
                out.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        for (name, on) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
        ] {
            if on {
                out.push(name);
            }
        }
    }
    out
}

/// A one-line summary for the start-up log and `emonet check`.
pub fn summary() -> String {
    let f = features();
    // The default classifier (int8 weights, float activations) and the detector run float
    // kernels; only the static int8 QDQ file would reach the integer ones.
    let kernels = if cfg!(target_arch = "aarch64") {
        if f.contains(&"dotprod") {
            "f32 matmul via NEON, int8 via NEON dot-product (Pi 5 / Orin class)"
        } else {
            "f32 matmul via NEON, int8 via plain NEON (Pi 4 / Jetson Nano class)"
        }
    } else if f.contains(&"avx512vnni") {
        "f32 matmul via AVX-512, int8 via AVX-512 VNNI"
    } else if f.contains(&"avx512f") {
        "f32 matmul via AVX-512"
    } else if f.contains(&"fma") {
        "f32 matmul via AVX2/FMA"
    } else {
        "generic kernels"
    };
    format!(
        "cpu {} features [{}]: {kernels}",
        std::env::consts::ARCH,
        f.join(" ")
    )
}

/// A `kB` field of `/proc/<pid>/status` (`pid` may be `self`), e.g. `VmHWM` or `VmRSS`, in KiB;
/// `None` where the kernel does not report it.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Hands the memory the process has freed back to the system (glibc's `malloc_trim`; nothing
/// elsewhere). Called once the models are loaded: building a plan parses the ONNX file and
/// rebuilds its graph several times, and glibc keeps what that freed in the main thread's heap
/// (about 10 MB after loading CenterFace), where the frame loop, running on another thread's
/// heap, never reuses it.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's own heaps; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn log_features() {
    log::info!("{}", summary());
}

#[cfg(test)]
mod tests {
    #[test]
    fn baseline_simd_is_detected() {
        let f = super::features();
        #[cfg(target_arch = "aarch64")]
        assert!(f.contains(&"neon"), "{f:?}");
        #[cfg(target_arch = "x86_64")]
        assert!(f.contains(&"sse4.1"), "{f:?}");
        assert!(super::summary().contains(std::env::consts::ARCH));
    }
}
