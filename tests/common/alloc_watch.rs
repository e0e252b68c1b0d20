//! An allocator that watches, per thread, the largest single allocation and how many reached
//! 64 MiB: a test bounds what one operation asked for while other tests run beside it. A test
//! file installs it with `#[global_allocator] static ALLOC: Watch = Watch;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static HUGE: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    if size >= 64 << 20 {
        let _ = HUGE.try_with(|h| h.set(h.get() + 1));
    }
}

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with this thread's largest allocation meanwhile and the
/// number of allocations of 64 MiB or more.
pub fn watched<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|l| l.set(0));
    HUGE.with(|h| h.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get), HUGE.with(Cell::get))
}
