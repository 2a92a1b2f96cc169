//! The low-level tools the CPU kernels share: a forward's output that may not be initialised yet ([`Out`]), a raw
//! output pointer that parallel tasks may carry, a pool of scratch buffers, and the one f32 gemm call. Everything
//! `unsafe` in the kernels goes through these, so their contracts are written once.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Where a forward kernel stores its output: a `&mut [f32]`, or memory not written yet (a new `Vec`'s spare
/// capacity), so that a layer's output is not zeroed only to be overwritten — zeroing it cost the bf16 VGG16
/// forward about 4% (184 MB at block1, batch 32, 150×150). The forward kernels only store into it (through
/// [`SendPtr`]), never read it, and store every value: `tests/conv_op.rs` fills it with NaN first and checks.
pub struct Out<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

impl<'a> From<&'a mut [MaybeUninit<f32>]> for Out<'a> {
    fn from(buffer: &'a mut [MaybeUninit<f32>]) -> Self {
        Out {
            ptr: buffer.as_mut_ptr().cast(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }
}

/// An initialised buffer stays initialised: an `Out` can only store f32 values into it.
impl<'a> From<&'a mut [f32]> for Out<'a> {
    fn from(buffer: &'a mut [f32]) -> Self {
        Out {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }
}

impl<'a> From<&'a mut Vec<f32>> for Out<'a> {
    fn from(buffer: &'a mut Vec<f32>) -> Self {
        Out::from(buffer.as_mut_slice())
    }
}

impl<'a> Out<'a> {
    /// Values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same buffer for a shorter borrow (to hand it to one kernel and keep it for another).
    pub fn reborrow(&mut self) -> Out<'_> {
        Out { ..*self }
    }

    /// The base pointer for the kernels' parallel tasks, which store (never read) their own parts of it.
    pub(super) fn ptr(&mut self) -> SendPtr {
        SendPtr(self.ptr)
    }

    /// The buffer zeroed, as a plain slice: for the kernels that read what they write (im2col, a separate pool).
    pub(super) fn zeroed(self) -> &'a mut [f32] {
        // SAFETY: ptr and len come from one live, exclusively borrowed buffer of `len` f32 (the From impls) that
        // lives for 'a; write_bytes makes every value 0.0, so the slice is initialised.
        unsafe {
            std::ptr::write_bytes(self.ptr, 0, self.len);
            std::slice::from_raw_parts_mut(self.ptr, self.len)
        }
    }
}

/// A new `Vec` of `len` values that `store` writes, without zeroing it first.
///
/// # Safety
/// `store` must store every one of the `len` values of the `Out` it is given (a panic is allowed: the vector is
/// then dropped empty).
// SAFETY (callers): the forward kernels store every value of their output (see [`Out`]).
pub(super) unsafe fn stored_by(len: usize, store: impl FnOnce(Out<'_>)) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    store(Out::from(&mut buffer.spare_capacity_mut()[..len]));
    // SAFETY: capacity ≥ len, and `store` wrote all len values (the caller's contract).
    unsafe { buffer.set_len(len) };
    buffer
}

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

    /// Values `at .. at + len` of the buffer, to store into: `MaybeUninit`, since an [`Out`] may not be
    /// initialised yet.
    ///
    /// # Safety
    /// `at + len` must lie inside the buffer this pointer came from, and no one else may access those values while
    /// the slice lives.
    // SAFETY (callers): each says which part of the output its task owns and why it lies inside.
    pub(super) unsafe fn row<'a>(self, at: usize, len: usize) -> &'a mut [MaybeUninit<f32>] {
        // SAFETY: the caller's contract; MaybeUninit<f32> has f32's layout and may hold any bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at).cast(), len) }
    }
}

/// Big scratch buffers kept between calls of a kernel, so that they are not allocated, and zeroed by the
/// allocator, every time (the kernels overwrite what they use).
pub(super) struct Pool<T>(std::sync::Mutex<Vec<Vec<T>>>);

impl<T: Copy + Default> Pool<T> {
    pub(super) const fn new() -> Self {
        Pool(std::sync::Mutex::new(Vec::new()))
    }

    /// A buffer of `len` values. Values it held before are kept (the caller writes or zeroes what it reads);
    /// new ones are `T::default()`.
    pub(super) fn take(&self, len: usize) -> Vec<T> {
        let mut buffer = self.lock().pop().unwrap_or_default();
        buffer.resize(len, T::default());
        buffer
    }

    /// Keeps `buffer` for a later [`Pool::take`] while the pool holds fewer than `keep`; frees it otherwise.
    pub(super) fn give(&self, buffer: Vec<T>, keep: usize) {
        let mut pool = self.lock();
        if pool.len() < keep && buffer.capacity() > 0 {
            pool.push(buffer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `dst (m×n, row stride dst_rs) [+]= lhs (m×k, strides lhs_cs, lhs_rs) · rhs (k×n, strides rhs_cs, rhs_rs)`.
///
/// # Safety
/// Every element addressed through the sizes and strides must lie inside live buffers, and `dst` must not overlap
/// `lhs` or `rhs` nor be written by anyone else during the call.
// SAFETY (callers): see "# Safety" above; the function itself only forwards to gemm::gemm.
#[allow(clippy::too_many_arguments)]
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

/// `c (m×n) = a (m×k) · b (k×n)`, all row-major and contiguous, on `threads` threads (for benchmarks and tests:
/// the checked way into [`sgemm`]).
///
/// Panics when a buffer's length does not fit its shape.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], (m, k, n): (usize, usize, usize), threads: usize) {
    assert_eq!(a.len(), m * k, "matmul: a is not {m}×{k}");
    assert_eq!(b.len(), k * n, "matmul: b is not {k}×{n}");
    assert_eq!(c.len(), m * n, "matmul: c is not {m}×{n}");
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the lengths were checked above, so every element the row strides (k, n, n) and unit column strides
    // address lies inside a, b and c; c is a distinct &mut, so it overlaps neither input.
    unsafe {
        sgemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_equals_the_schoolbook_product_and_refuses_wrong_lengths() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let mut c = vec![0f32; m * n];
        matmul(&a, &b, &mut c, (m, k, n), 2);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                assert!(
                    (c[i * n + j] - want).abs() < 1e-4,
                    "({i}, {j}): {} vs {want}",
                    c[i * n + j]
                );
            }
        }
        let short = std::panic::catch_unwind(|| {
            let mut c = vec![0f32; m * n - 1];
            matmul(&a, &b, &mut c, (m, k, n), 1);
        });
        assert!(short.is_err());
    }

    #[test]
    fn a_pool_hands_back_its_buffers_with_their_values_and_keeps_no_more_than_asked() {
        let pool: Pool<u32> = Pool::new();
        let mut a = pool.take(4);
        assert_eq!(a, vec![0; 4]);
        a.fill(7);
        pool.give(a, 1);
        pool.give(vec![9; 3], 1);
        assert_eq!(
            pool.take(6),
            vec![7, 7, 7, 7, 0, 0],
            "the kept buffer, grown with defaults"
        );
        assert_eq!(pool.take(2), vec![0, 0], "the second buffer was not kept");
    }
}
