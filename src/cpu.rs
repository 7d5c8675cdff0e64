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

/// Hands the memory the process has freed back to the system: the free pages of the large-block
/// pool ([`crate::alloc`]) and of glibc's heaps (`malloc_trim`), and the resident pages of
/// emonet's own code ([`release_startup_code`]). Called once the models are loaded: building a
/// plan parses the ONNX file and rebuilds its graph several times, and what that freed (about
/// 10 MB after loading CenterFace) and the code that did it would otherwise stay resident,
/// though the frame loop needs neither.
pub fn release_freed_memory() {
    crate::alloc::release_free();
    release_startup_code();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's own heaps; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Unmaps the resident pages of the executable's read-only, never-written mappings (its code and
/// constants). Start-up runs a large part of the binary once — config and protobuf parsing,
/// tract's graph optimizer — and those pages would stay in the resident set for good (about 7 of
/// 17 MB of code with `range = "far"`); the frame loop maps back in, from the page cache, only the
/// code it runs (a few thousand minor faults, once). Pages a mapping ever had copied on write
/// (relocated constants) are left alone: unmapping those would lose their contents.
pub fn release_startup_code() {
    #[cfg(target_os = "linux")]
    {
        let (Ok(smaps), Ok(exe)) = (
            std::fs::read_to_string("/proc/self/smaps"),
            std::fs::read_link("/proc/self/exe"),
        ) else {
            return;
        };
        for (start, end) in unwritten_file_ranges(&smaps, &exe) {
            // SAFETY: a read-only private mapping of the executable with no anonymous (copied)
            // page: dropping its pages loses nothing, the next access reads them from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The address ranges in `/proc/<pid>/smaps` text that map `file` read-only (no `w`) and hold no
/// anonymous page.
fn unwritten_file_ranges(smaps: &str, file: &std::path::Path) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The current mapping, if it is one of `file`'s read-only ones: (start, end).
    let mut current = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            current = range.filter(|_| {
                perms.starts_with('r') && !perms.contains('w') && std::path::Path::new(path) == file
            });
        } else if first == "Anonymous:" {
            let anonymous_kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            if let Some(range) = current.take() {
                if anonymous_kib == 0 {
                    out.push(range);
                }
            }
        }
    }
    out
}

pub fn log_features() {
    log::info!("{}", summary());
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const SMAPS: &str = "\
55d0c0000000-55d0c0400000 r--p 00000000 fd:01 42 /usr/bin/emonet
Size:               4096 kB
Rss:                2048 kB
Anonymous:             0 kB
55d0c0400000-55d0c1400000 r-xp 00400000 fd:01 42 /usr/bin/emonet
Size:              16384 kB
Anonymous:             0 kB
55d0c1400000-55d0c1500000 r--p 01400000 fd:01 42 /usr/bin/emonet
Size:               1024 kB
Anonymous:           640 kB
55d0c1500000-55d0c1510000 rw-p 01500000 fd:01 42 /usr/bin/emonet
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
";

    /// Code and constants of the executable qualify; relocated constants (copied on write), the
    /// writable data, other files and anonymous memory do not.
    #[test]
    fn only_the_executables_unwritten_read_only_pages_are_released() {
        let ranges = super::unwritten_file_ranges(SMAPS, Path::new("/usr/bin/emonet"));
        assert_eq!(
            ranges,
            [
                (0x55d0c0000000, 0x55d0c0400000),
                (0x55d0c0400000, 0x55d0c1400000)
            ]
        );
        assert!(super::unwritten_file_ranges(SMAPS, Path::new("/usr/bin/other")).is_empty());
    }

    /// In this test process: the code's resident pages go, and the code keeps running (what it
    /// needs comes back from the page cache).
    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_startup_code_lowers_the_file_backed_resident_set() {
        let before = super::proc_status_kib("self", "RssFile").expect("RssFile");
        super::release_startup_code();
        let after = super::proc_status_kib("self", "RssFile").expect("RssFile");
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        assert!(super::summary().contains(std::env::consts::ARCH));
    }
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
