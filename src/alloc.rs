//! The process's memory allocator: large blocks from one pool whose pages are kept between
//! frames, everything else from the system allocator.
//!
//! Why: tract allocates each activation of a plan afresh on every run and frees it once the
//! next layers have read it — for CenterFace (`detector.range = "far"`) about 200 blocks of
//! 128 KiB–4 MiB per detection, never more than about 10 MB alive at once. glibc serves them
//! from the inference thread's arena, which fragments: measured, that arena held 41 MB of
//! address space, nearly all of it resident, for 4 MB in use between frames, and the daemon's
//! peak RSS reached 90–98 MB. Handing each block back to the kernel instead (a low
//! `M_MMAP_THRESHOLD`) keeps memory low, but then every frame faults its activations' pages in
//! afresh and CenterFace takes twice as long.
//!
//! [`LargeBlockPool`] keeps both: blocks of [`LARGE`] bytes or more are cut from one reserved
//! address range, best fit among the free extents with neighbours merged, so each frame's
//! layers reuse the pages the previous frame touched and the range grows only to the largest
//! set of blocks alive at once (plus what fragments, which best fit keeps small). The range is
//! reserved inaccessible and committed as it grows (no commit charge for what is never used);
//! if reserving or committing fails, blocks come from the system allocator instead.
//! [`release_free`] hands the pool's free pages back to the kernel (once, after loading).
//! The capture thread keeps out of the pool ([`bypass_this_thread`]): its decoded frames would
//! otherwise be cut from it between the inference thread's activations, wherever the two
//! threads' timing put them, and fragment it.
//!
//! The binary installs it (`#[global_allocator]` in `main.rs`); in a process that does not, the
//! pool is never touched and [`release_free`] does nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Blocks of this size or more come from the pool (glibc's own default mmap threshold).
pub const LARGE: usize = 128 * 1024;
/// Unit of the pool's bookkeeping and the alignment of every pool block. A multiple of the
/// page size of every kernel emonet runs on (4 KiB; 16 KiB on some aarch64 kernels).
const GRANULE: usize = 16 * 1024;
/// Address space reserved (not committed) for the pool: far beyond any board's RAM.
const RESERVE: usize = 4 << 30;
/// Committing grows in steps of this many bytes (fewer `mprotect` calls).
const COMMIT_STEP: usize = 2 << 20;
/// Free extents tracked at once. A frame loop leaves a handful; if this ever fills, a freed
/// extent that merges with none is released to the kernel and its addresses are not reused.
const MAX_FREE: usize = 256;

/// The global allocator: see the module documentation.
pub struct LargeBlockPool;

/// What the pool holds, for `emonet bench` and the tests (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// In blocks handed out and not yet freed.
    pub in_use: usize,
    /// The most `in_use` has been since the last [`release_free`].
    pub peak_in_use: usize,
    /// The end of the highest block: everything the pool has addresses for below it.
    pub top: usize,
    /// The most `top` has been since the last [`release_free`]: the pool's footprint.
    pub peak_top: usize,
    /// Free extents below `top` (count).
    pub free_extents: usize,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena::new(RESERVE));
/// Start of the reserved range once reserved (0 before; `usize::MAX` if reserving failed).
/// Read without the lock to tell pool blocks from system ones.
static BASE: AtomicUsize = AtomicUsize::new(0);
const NO_POOL: usize = usize::MAX;

fn arena() -> std::sync::MutexGuard<'static, Arena> {
    ARENA.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set on threads whose large blocks come from the system allocator ([`bypass_this_thread`]).
    static BYPASS: Cell<bool> = const { Cell::new(false) };
}

/// Sends the calling thread's large blocks to the system allocator from now on (freeing them
/// works from any thread). For threads whose blocks outlive a frame's activations or interleave
/// with them, such as the capture thread's decoded frames: cut from the pool between
/// activations, they split its free extents at whatever point the two threads happened to meet,
/// and the pool's top stepped up by megabytes at random moments of a long run.
pub fn bypass_this_thread() {
    BYPASS.with(|b| b.set(true));
}

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE
        && layout.align() <= GRANULE
        && !BYPASS.try_with(Cell::get).unwrap_or(false)
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// The pool's counters now.
pub fn stats() -> PoolStats {
    arena().stats()
}

/// Hands the pages of the pool's free extents (and those above its top) back to the kernel;
/// they read as zero when used again. Cheap to call, but the next frame faults in whatever it
/// reuses, so call it after start-up, not per frame. The peaks restart from here.
pub fn release_free() {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 || base == NO_POOL {
        return;
    }
    let mut a = arena();
    for &(off, len) in a.free.as_slice() {
        discard(base + off, len);
    }
    discard(base + a.top, a.dirty.saturating_sub(a.top));
    a.dirty = a.top;
    a.peak_in_use = a.in_use;
    a.peak_top = a.top;
}

/// `madvise(MADV_DONTNEED)` on the whole pages inside `[addr, addr + len)`.
fn discard(addr: usize, len: usize) {
    let page = page_size();
    let start = round_up(addr, page);
    let end = (addr + len) / page * page;
    if end > start {
        // SAFETY: the range lies inside the pool's own mapping and holds no live block (free
        // extents and the space above the top); anonymous pages read as zero afterwards.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(1)
}

/// Reserves the pool's range on first use; `None` if the kernel refused (then never again).
fn base() -> Option<usize> {
    match BASE.load(Ordering::Acquire) {
        NO_POOL => None,
        0 => {
            let _guard = arena();
            // Another thread may have reserved it while this one waited for the lock.
            match BASE.load(Ordering::Acquire) {
                0 => {
                    let b = reserve().unwrap_or(NO_POOL);
                    BASE.store(b, Ordering::Release);
                    (b != NO_POOL).then_some(b)
                }
                NO_POOL => None,
                b => Some(b),
            }
        }
        b => Some(b),
    }
}

fn reserve() -> Option<usize> {
    // SAFETY: a fresh anonymous mapping, inaccessible until committed; nothing else uses it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            RESERVE + GRANULE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then(|| round_up(p as usize, GRANULE))
}

/// Makes the pool readable and writable up to its top (in `COMMIT_STEP`s).
fn commit(a: &mut Arena, base: usize) -> bool {
    let end = a.top;
    if end <= a.committed {
        return true;
    }
    let to = round_up(end, COMMIT_STEP).min(a.capacity);
    // SAFETY: [committed, to) lies inside the reserved range and holds no block yet.
    let ok = unsafe {
        libc::mprotect(
            (base + a.committed) as *mut libc::c_void,
            to - a.committed,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    };
    if ok {
        a.committed = to;
    }
    ok
}

impl LargeBlockPool {
    fn owns(ptr: *mut u8) -> bool {
        let base = BASE.load(Ordering::Acquire);
        base != 0 && base != NO_POOL && (ptr as usize).wrapping_sub(base) < RESERVE
    }

    /// A pool block of `size` bytes, zeroed if asked; `None` sends the caller to the system.
    fn alloc_large(size: usize, zeroed: bool) -> Option<*mut u8> {
        let base = base()?;
        let (off, clear) = {
            let mut a = arena();
            let off = a.take(size)?;
            if !commit(&mut a, base) {
                a.give(off, size);
                return None;
            }
            let end = off + round_up(size, GRANULE);
            // Pages never handed out since the last release read as zero already.
            let clear = a.dirty.min(end).saturating_sub(off);
            a.dirty = a.dirty.max(end);
            (off, clear)
        };
        let ptr = (base + off) as *mut u8;
        if zeroed && clear > 0 {
            // SAFETY: [ptr, ptr + clear) is inside the block just taken.
            unsafe { ptr.write_bytes(0, clear.min(size)) };
        }
        Some(ptr)
    }

    fn free_large(ptr: *mut u8, size: usize) {
        let off = ptr as usize - BASE.load(Ordering::Acquire);
        let mut a = arena();
        if !a.give(off, size) {
            // The free list is full: the extent's addresses are given up, its pages released.
            drop(a);
            discard(ptr as usize, round_up(size, GRANULE));
        }
    }
}

// SAFETY: pool blocks are disjoint extents of one private mapping, aligned to GRANULE (so any
// layout with a smaller alignment is satisfied); every other request goes to `System`, and a
// pointer is returned to whichever allocator it came from (`owns`).
unsafe impl GlobalAlloc for LargeBlockPool {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            if let Some(p) = Self::alloc_large(layout.size(), false) {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            if let Some(p) = Self::alloc_large(layout.size(), true) {
                return p;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::owns(ptr) {
            Self::free_large(ptr, layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let old_size = layout.size();
        if Self::owns(ptr) {
            let base = BASE.load(Ordering::Acquire);
            let off = ptr as usize - base;
            let mut a = arena();
            if a.resize(off, old_size, new_size) {
                if commit(&mut a, base) {
                    a.dirty = a.dirty.max(off + round_up(new_size, GRANULE));
                    return ptr;
                }
                a.resize(off, new_size, old_size);
            }
        } else if !is_large(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        // Moving: into the pool if the new size is large (or the block was a pool one).
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

/// The pool's bookkeeping, in offsets from its start (no memory is touched here): a top below
/// which every block lies, and the free extents below it, sorted by offset, never adjacent.
struct Arena {
    capacity: usize,
    top: usize,
    /// Offsets below this are readable and writable.
    committed: usize,
    /// Offsets below this may hold old data (`alloc_zeroed` clears them).
    dirty: usize,
    free: Extents,
    in_use: usize,
    peak_in_use: usize,
    peak_top: usize,
}

impl Arena {
    const fn new(capacity: usize) -> Self {
        Self {
            capacity,
            top: 0,
            committed: 0,
            dirty: 0,
            free: Extents::new(),
            in_use: 0,
            peak_in_use: 0,
            peak_top: 0,
        }
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            in_use: self.in_use,
            peak_in_use: self.peak_in_use,
            top: self.top,
            peak_top: self.peak_top,
            free_extents: self.free.len,
        }
    }

    /// The offset of a block of `size` bytes: the smallest free extent that holds it (lowest
    /// first among equals), else the top, extended. `None` when the range is exhausted.
    fn take(&mut self, size: usize) -> Option<usize> {
        let size = round_up(size, GRANULE);
        let best = (0..self.free.len)
            .filter(|&i| self.free.items[i].1 >= size)
            .min_by_key(|&i| self.free.items[i].1);
        let off = match best {
            Some(i) => {
                let (off, len) = self.free.items[i];
                if len == size {
                    self.free.remove(i);
                } else {
                    self.free.items[i] = (off + size, len - size);
                }
                off
            }
            None => {
                // A free extent ending at the top is extended rather than skipped over.
                let start = match self.free.last() {
                    Some((off, len)) if off + len == self.top => {
                        self.free.remove(self.free.len - 1);
                        off
                    }
                    _ => self.top,
                };
                if start + size > self.capacity {
                    if start != self.top {
                        self.free.insert(start, self.top - start);
                    }
                    return None;
                }
                self.top = start + size;
                start
            }
        };
        self.in_use += size;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
        self.peak_top = self.peak_top.max(self.top);
        Some(off)
    }

    /// Frees the block at `off`. `false` if the free list was full and the extent, merging
    /// with none, could not be recorded (its addresses are then lost to the pool).
    fn give(&mut self, off: usize, size: usize) -> bool {
        let size = round_up(size, GRANULE);
        self.in_use -= size;
        if off + size == self.top {
            self.top = off;
            // The free extent now ending at the top goes too (extents are never adjacent).
            if let Some((o, l)) = self.free.last() {
                if o + l == self.top {
                    self.top = o;
                    self.free.remove(self.free.len - 1);
                }
            }
            return true;
        }
        self.free.insert(off, size)
    }

    /// Grows or shrinks the block at `off` where it lies; `false` if it cannot grow there.
    fn resize(&mut self, off: usize, old: usize, new: usize) -> bool {
        let (old, new) = (round_up(old, GRANULE), round_up(new.max(1), GRANULE));
        if new <= old {
            // If the free list is full the tail's addresses are lost; the block still shrank.
            if new < old {
                self.give(off + new, old - new);
            }
            true
        } else if off + old == self.top {
            if off + new > self.capacity {
                return false;
            }
            self.top = off + new;
            self.grew(new - old)
        } else {
            let end = off + old;
            match self.free.find(end) {
                Some(i) if self.free.items[i].1 >= new - old => {
                    let (o, l) = self.free.items[i];
                    if l == new - old {
                        self.free.remove(i);
                    } else {
                        self.free.items[i] = (o + (new - old), l - (new - old));
                    }
                    self.grew(new - old)
                }
                _ => false,
            }
        }
    }

    fn grew(&mut self, by: usize) -> bool {
        self.in_use += by;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
        self.peak_top = self.peak_top.max(self.top);
        true
    }
}

/// Free extents `(offset, length)` sorted by offset, in a fixed array: the allocator cannot
/// allocate its own bookkeeping.
struct Extents {
    len: usize,
    items: [(usize, usize); MAX_FREE],
}

impl Extents {
    const fn new() -> Self {
        Self {
            len: 0,
            items: [(0, 0); MAX_FREE],
        }
    }

    fn as_slice(&self) -> &[(usize, usize)] {
        &self.items[..self.len]
    }

    fn last(&self) -> Option<(usize, usize)> {
        self.as_slice().last().copied()
    }

    /// The index of the extent starting at `off`.
    fn find(&self, off: usize) -> Option<usize> {
        self.as_slice().binary_search_by_key(&off, |e| e.0).ok()
    }

    fn remove(&mut self, i: usize) {
        self.items.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Records `[off, off + len)` as free, merged with the extents it touches; `false` if it
    /// touches none and the array is full.
    fn insert(&mut self, off: usize, len: usize) -> bool {
        let i = self.as_slice().partition_point(|e| e.0 < off);
        let joins_prev = i > 0 && {
            let (po, pl) = self.items[i - 1];
            po + pl == off
        };
        let joins_next = i < self.len && off + len == self.items[i].0;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.items[i - 1].1 += len + self.items[i].1;
                self.remove(i);
            }
            (true, false) => self.items[i - 1].1 += len,
            (false, true) => self.items[i] = (off, len + self.items[i].1),
            (false, false) => {
                if self.len == MAX_FREE {
                    return false;
                }
                self.items.copy_within(i..self.len, i + 1);
                self.items[i] = (off, len);
                self.len += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (no dependency needed for a shuffle).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    /// The arena never hands out overlapping blocks, keeps its extents sorted, apart and below
    /// the top, and returns to empty when everything is freed.
    #[test]
    fn random_takes_gives_and_resizes_stay_disjoint() {
        let mut a = Arena::new(1 << 30);
        let mut rng = Lcg(7);
        let mut live: Vec<(usize, usize)> = Vec::new();
        for step in 0..20_000 {
            // At most 200 blocks alive (as in a frame loop), so the free list cannot fill.
            match rng.next(10) {
                0..=4 if live.len() < 200 => {
                    let size = (1 + rng.next(64)) * GRANULE - rng.next(GRANULE);
                    let off = a.take(size).expect("capacity is ample");
                    live.push((off, size));
                }
                0..=8 if !live.is_empty() => {
                    let (off, size) = live.swap_remove(rng.next(live.len()));
                    assert!(a.give(off, size), "step {step}: free list full");
                }
                _ if !live.is_empty() => {
                    let i = rng.next(live.len());
                    let (off, size) = live[i];
                    let new = (1 + rng.next(64)) * GRANULE;
                    if a.resize(off, size, new) {
                        live[i].1 = new;
                    }
                }
                _ => {}
            }
            check(&a, &live, step);
        }
        for (off, size) in live.drain(..) {
            assert!(a.give(off, size));
        }
        assert_eq!((a.top, a.in_use, a.free.len), (0, 0, 0));
    }

    fn check(a: &Arena, live: &[(usize, usize)], step: usize) {
        let mut blocks: Vec<(usize, usize)> = live
            .iter()
            .map(|&(o, s)| (o, round_up(s, GRANULE)))
            .chain(a.free.as_slice().iter().copied())
            .collect();
        blocks.sort_unstable();
        // Live blocks and free extents tile [0, top) exactly: no overlap, no gap.
        let mut end = 0;
        for (o, s) in blocks {
            assert_eq!(o, end, "step {step}: overlap or gap at {o}");
            end = o + s;
        }
        assert_eq!(end, a.top, "step {step}");
        let used: usize = live.iter().map(|&(_, s)| round_up(s, GRANULE)).sum();
        assert_eq!(a.in_use, used, "step {step}");
        let f = a.free.as_slice();
        assert!(
            f.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0),
            "step {step}: {f:?}"
        );
        assert!(f.last().is_none_or(|&(o, l)| o + l < a.top), "step {step}");
    }

    /// The same sequence of blocks, allocated and freed again (one frame after another), reuses
    /// the same addresses: the pool does not grow from frame to frame.
    #[test]
    fn a_repeated_frame_reuses_its_blocks() {
        let mut a = Arena::new(1 << 30);
        let weights = a.take(9 << 20).unwrap();
        let sizes = [
            3 << 20,
            1 << 20,
            2 << 20,
            700 << 10,
            1500 << 10,
            300 << 10,
            2 << 20,
        ];
        let mut tops = Vec::new();
        for _ in 0..5 {
            // Each layer frees the input it read once its output exists.
            let mut prev = a.take(sizes[0]).unwrap();
            let mut prev_size = sizes[0];
            for &s in &sizes[1..] {
                let out = a.take(s).unwrap();
                a.give(prev, prev_size);
                (prev, prev_size) = (out, s);
            }
            a.give(prev, prev_size);
            tops.push(a.peak_top);
        }
        assert!(tops.windows(2).all(|w| w[0] == w[1]), "{tops:?}");
        // Never more than the weights and the two largest neighbours alive at once, rounded.
        assert!(
            a.peak_top <= (9 << 20) + (5 << 20) + 2 * GRANULE,
            "{}",
            a.peak_top
        );
        assert!(a.give(weights, 9 << 20));
        assert_eq!(a.top, 0);
    }

    #[test]
    fn exhausting_the_range_fails_and_keeps_the_books() {
        let mut a = Arena::new(4 * GRANULE);
        let x = a.take(2 * GRANULE).unwrap();
        let y = a.take(GRANULE).unwrap();
        assert!(a.give(y, GRANULE));
        assert_eq!(a.take(3 * GRANULE), None);
        assert_eq!((a.top, a.free.len), (2 * GRANULE, 0));
        assert_eq!(a.take(2 * GRANULE), Some(2 * GRANULE));
        assert!(a.give(x, 2 * GRANULE));
        assert_eq!(a.free.as_slice(), &[(0, 2 * GRANULE)]);
    }

    /// Through the real mapping: blocks are writable, zeroed when asked (also after reuse and
    /// after release), moved by realloc with their contents, and small requests are not pooled.
    #[test]
    fn the_real_pool_serves_large_blocks() {
        let pool = LargeBlockPool;
        let layout = Layout::from_size_align(LARGE * 3, 64).unwrap();
        unsafe {
            let p = pool.alloc(layout);
            assert!(LargeBlockPool::owns(p), "a large block comes from the pool");
            p.write_bytes(0xAB, layout.size());
            pool.dealloc(p, layout);
            let z = pool.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(z, layout.size())
                .iter()
                .all(|&b| b == 0));
            z.write_bytes(7, layout.size());
            let bigger = pool.realloc(z, layout, LARGE * 40);
            let s = std::slice::from_raw_parts(bigger, LARGE * 40);
            assert!(s[..layout.size()].iter().all(|&b| b == 7));
            let big_layout = Layout::from_size_align(LARGE * 40, 64).unwrap();
            pool.dealloc(bigger, big_layout);
            release_free();
            let z = pool.alloc_zeroed(big_layout);
            let s = std::slice::from_raw_parts(z, big_layout.size());
            assert!(s.iter().all(|&b| b == 0));
            pool.dealloc(z, big_layout);

            let small = Layout::from_size_align(LARGE - 1, 8).unwrap();
            let q = pool.alloc(small);
            assert!(!LargeBlockPool::owns(q));
            let q2 = pool.realloc(q, small, LARGE * 2);
            assert!(
                LargeBlockPool::owns(q2),
                "grown past LARGE, it moves into the pool"
            );
            pool.dealloc(q2, Layout::from_size_align(LARGE * 2, 8).unwrap());
        }
    }

    /// A thread that bypasses the pool gets its large blocks from the system and frees pool
    /// blocks made elsewhere; other threads still use the pool.
    #[test]
    fn a_bypassing_thread_takes_no_pool_blocks() {
        let pool = LargeBlockPool;
        let layout = Layout::from_size_align(LARGE * 2, 64).unwrap();
        let made_here = unsafe { pool.alloc(layout) } as usize;
        assert!(LargeBlockPool::owns(made_here as *mut u8));
        std::thread::spawn(move || unsafe {
            let pool = LargeBlockPool;
            bypass_this_thread();
            let own = pool.alloc(layout);
            assert!(
                !LargeBlockPool::owns(own),
                "a bypassing thread's block is a pool one"
            );
            pool.dealloc(own, layout);
            pool.dealloc(made_here as *mut u8, layout);
        })
        .join()
        .unwrap();
        let again = unsafe { pool.alloc(layout) };
        assert!(
            LargeBlockPool::owns(again),
            "the bypass leaked to another thread"
        );
        unsafe { pool.dealloc(again, layout) };
    }
}
