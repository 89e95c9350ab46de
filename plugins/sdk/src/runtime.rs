//! The language runtime of a no_std plugin: allocator, panic handler and (components only)
//! `cabi_realloc`.

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A panic aborts the instance (a trap): the host sees a failed call, discards the instance and
/// applies its failure policy. There is no unwinding in a plugin.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator, through which the host passes strings and lists into the
/// guest. wit-bindgen leaves it to the C library on wasm32-wasip2; a no_std guest has none.
///
/// # Safety
/// Called by the host per the canonical ABI: `old` is null with `old_len` 0, or a block this
/// function returned with that length and `align`.
#[cfg(target_env = "p2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        // A zero-sized allocation: any aligned non-null pointer will do.
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI only passes power-of-two alignments and sizes that fit.
    let p = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if p.is_null() {
        core::arch::wasm32::unreachable()
    }
    p
}
