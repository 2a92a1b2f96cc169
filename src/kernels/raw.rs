//! The two low-level tools the CPU kernels share: a raw output pointer that parallel tasks may carry, and the one
//! f32 gemm call. Everything `unsafe` in the kernels goes through these, so their contracts are written once.

/// An output buffer's base pointer, shared by rayon tasks that each write their own disjoint part of it.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(*mut f32);

// SAFETY: a SendPtr is only made from a `&mut [f32]` that the creating function holds for the whole parallel
// section, and each task writes only its own region of it (each use site says which), so moving the pointer to
// another thread cannot create a data race.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: shared only for writes to disjoint regions, never read concurrently with a write.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(super) fn new(buffer: &mut [f32]) -> Self {
        SendPtr(buffer.as_mut_ptr())
    }

    // A method (not field access) so that closures capture the whole Send wrapper.
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst (m×n, row stride dst_rs) [+]= lhs (m×k, strides lhs_cs, lhs_rs) · rhs (k×n, strides rhs_cs, rhs_rs)`.
///
/// # Safety
/// Every element addressed through the sizes and strides must lie inside live buffers, and `dst` must not overlap
/// `lhs` or `rhs` nor be written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
// SAFETY (callers): see "# Safety" above; the function itself only forwards to gemm::gemm.
pub(super) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    par: gemm::Parallelism,
) {
    // SAFETY: the caller guarantees the buffers' extents and exclusivity (see "# Safety"); gemm needs no more.
    unsafe {
        gemm::gemm(
            m, n, k, dst, 1, dst_rs, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0, 1.0, false, false,
            false, par,
        );
    }
}
