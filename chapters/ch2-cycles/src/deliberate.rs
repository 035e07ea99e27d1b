//! Leaks on purpose: the safe and unsafe ways Rust lets a program keep
//! memory forever, and what each is for.
//!
//! Leaking is *safe* in Rust (`Box::leak` and `mem::forget` are safe
//! functions): the language promises memory safety, not freedom from leaks.
//! Each of these is right once, for a value that must live until the process
//! exits or that someone else will free; each is a leak when it runs per
//! request.

use std::rc::Rc;

// ANCHOR: box_leak
/// Turns a configuration loaded once at start-up into a `&'static` that
/// every part of the program can borrow without reference counting.
/// Called once, that is a design; called per request, it is a leak.
pub fn leak_config(config_bytes: usize) -> &'static [u8] {
    Box::leak(vec![0u8; config_bytes].into_boxed_slice())
}
// ANCHOR_END: box_leak

// ANCHOR: forget
/// `mem::forget` skips a value's destructor: a forgotten `Vec` keeps its
/// buffer allocated for good. Its legitimate use is handing a resource to
/// code that releases it some other way (a buffer whose pointer went to C,
/// a guard whose unlock happens elsewhere); `ManuallyDrop` says the same
/// more explicitly.
pub fn forget_buffer(buffer_bytes: usize) {
    let buffer = vec![0u8; buffer_bytes];
    std::mem::forget(buffer);
}
// ANCHOR_END: forget

// ANCHOR: into_raw
/// Hands an `Rc` across a boundary that only carries raw pointers (a C
/// callback's `void *user_data`, say). The count is not decremented: until
/// [`release_handle`] turns the pointer back into an `Rc`, the value is
/// owned by nobody Rust can see.
pub fn into_handle<T>(shared: Rc<T>) -> *const T {
    Rc::into_raw(shared)
}

/// Takes back what [`into_handle`] gave away, so dropping it frees the value.
///
/// # Safety
///
/// `handle` must come from [`into_handle`] with the same `T`, and must not
/// have been released before.
pub unsafe fn release_handle<T>(handle: *const T) -> Rc<T> {
    // SAFETY: the caller promises `handle` came from `Rc::into_raw` and is
    // released once.
    unsafe { Rc::from_raw(handle) }
}
// ANCHOR_END: into_raw
