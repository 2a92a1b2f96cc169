//! Intel AMX (Sapphire Rapids and later): the bf16 products on the tile registers' `tdpbf16ps`.
//!
//! Rust's AMX intrinsics are unstable, so the tile instructions are inline `asm!`. Linux hands out the tile-data
//! state only on request, `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once per process.
//!
//! Before its first use a forked child process computes one block with it and compares the result with exact
//! sums; a crash or a wrong value there turns AMX off for the process with a one-line notice, and the
//! AVX512-BF16 kernel runs instead. The addressing (the layouts, the k steps and their tail, the edges) is also
//! run on every machine through [`emulated_tile`], a Rust model of the tile instructions with the same arguments
//! (`tests/bf16.rs`); `scripts/amx_check.sh` runs the real thing where AMX is lent.
//!
//! Layouts. B is [`super::bf16::pack_b`]'s (panels of [`NR`] columns, each k-pair of a column one u32): a B tile
//! reads 16 k-pair rows × 16 columns of a panel with a 128-byte stride. An A tile needs each row's k-pairs side by
//! side, so A is relaid from the AVX512-BF16 panels into rows of `kp` rounded up to 16 pairs ([`rows_layout`]).
//! One kernel call makes a [`ROWS`] × [`NR`] block of C: four C tiles of 16 × 16, from two A tiles and two B tiles
//! per k step, so that each tile loaded feeds two `tdpbf16ps` (the 2 × 2 blocking every AMX GEMM uses; a first
//! version with 8 rows × 32 columns a call fed each tile once and was slower than tract-linalg's kernel).

use super::bf16_format::{from_bf16, to_bf16, MR, NR};

/// k-pairs per tile step (a 64-byte tile row).
pub const STEP: usize = 16;

/// Rows of C per kernel call: two tiles of 16 rows (a whole number of [`MR`] panels).
pub const ROWS: usize = 32;
const _: () = assert!(ROWS.is_multiple_of(MR) && NR == 32);

/// A tile kernel: `out (ROWS × NR, row stride ldc) = A · B`, or `+=` when `accumulate`, for `kp` k-pairs, A in
/// [`rows_layout`] (row stride `lda` pairs, a multiple of [`STEP`]), B one panel of [`super::bf16::pack_b`]. The
/// tiles are stored straight into C (no copy through a buffer: at k = 512 that copy cost a third of the time).
///
/// # Safety
/// `a` must hold ROWS rows of `lda ≥ kp` u32 (zero past kp), `b` kp rows of NR u32, `out` ROWS rows of NR f32,
/// `ldc ≥ NR` apart; for [`tile`], the CPU must have AMX-TILE and AMX-BF16 and the process the tile-data
/// permission ([`status`] is `Ready`).
// SAFETY (callers): see "# Safety"; `bf16::amx_block` checks the buffers and hands out `tile` only when Ready.
pub type TileFn =
    unsafe fn(kp: usize, a: *const u32, lda: usize, b: *const u32, out: *mut f32, ldc: usize, accumulate: bool);

/// Whether AMX runs here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amx {
    /// The CPU (or the OS) has no AMX.
    Absent,
    /// Checked and in use.
    Ready,
    /// The CPU has it but it cannot be used: why (printed once as a notice).
    Refused(String),
}

/// AMX's status in this process, found once: CPUID, the OS's XSAVE state, Linux's permission, the self-check.
pub fn status() -> &'static Amx {
    static STATUS: std::sync::OnceLock<Amx> = std::sync::OnceLock::new();
    STATUS.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> Amx {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID exists on every x86-64 CPU (safe in today's Rust); leaf 7 only when the maximum leaf reaches it.
    let max_leaf = __cpuid(0).eax;
    let leaf1 = __cpuid(1);
    if max_leaf < 7 {
        return Amx::Absent;
    }
    let leaf7 = __cpuid_count(7, 0);
    let (has_tile, has_bf16) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 22) != 0);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !(has_tile && has_bf16 && osxsave) {
        return Amx::Absent;
    }
    // XCR0 bits 17 and 18: the OS saves the tile configuration and data.
    let xcr0: u64 = {
        let (lo, hi): (u32, u32);
        // SAFETY: XGETBV with ECX = 0 is allowed when CPUID reports OSXSAVE (checked above); it only reads XCR0.
        unsafe { std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        (u64::from(hi) << 32) | u64::from(lo)
    };
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return Amx::Absent;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only asks the kernel for a permission; no memory is passed.
    if unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } != 0 {
        return Amx::Refused(format!(
            "Linux refused AMX's tile data (arch_prctl: {})",
            std::io::Error::last_os_error()
        ));
    }
    match self_check(self::tile) {
        Ok(()) => Amx::Ready,
        Err(why) => Amx::Refused(why),
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> Amx {
    Amx::Absent
}

/// Runs `kernel` on one block (20 k-pairs: a full step and a tail), then adds the same block to it, in a forked
/// child and compares its output with exact sums (small integers, so any correct kernel matches to the bit). Err says why not: a signal, or
/// wrong values. The child touches no lock and allocates nothing, as a fork of a threaded process must.
pub fn self_check(kernel: TileFn) -> Result<(), String> {
    let kp: usize = 20;
    let lda = kp.div_ceil(STEP) * STEP;
    let bf16 = |v: i32| u32::from(to_bf16(v as f32));
    let pair = |lo: i32, hi: i32| bf16(lo) | (bf16(hi) << 16);
    let a_val = |r: usize, t: usize| ((r * 5 + t * 3) % 7) as i32 - 3;
    let b_val = |t: usize, j: usize| ((t * 2 + j * 5) % 9) as i32 - 4;
    let mut a = vec![0u32; ROWS * lda];
    for r in 0..ROWS {
        for p in 0..kp {
            a[r * lda + p] = pair(a_val(r, 2 * p), a_val(r, 2 * p + 1));
        }
    }
    let b: Vec<u32> = (0..kp * NR)
        .map(|i| pair(b_val(2 * (i / NR), i % NR), b_val(2 * (i / NR) + 1, i % NR)))
        .collect();
    let want: Vec<f32> = (0..ROWS * NR)
        .map(|i| (0..2 * kp).map(|t| a_val(i / NR, t) * b_val(t, i % NR)).sum::<i32>() as f32)
        .collect();
    let mut out = vec![f32::NAN; ROWS * NR];
    in_child(&mut || {
        // SAFETY: a holds ROWS rows of lda ≥ kp u32, b kp rows of NR, out ROWS × NR (made above); the caller
        // vouches for the kernel's CPU requirements, and a crash here ends only the child.
        unsafe { kernel(kp, a.as_ptr(), lda, b.as_ptr(), out.as_mut_ptr(), NR, false) };
        let mut right = out.iter().zip(&want).all(|(o, w)| o == w);
        // Again, adding to what is there: twice the sums.
        // SAFETY: as above.
        unsafe { kernel(kp, a.as_ptr(), lda, b.as_ptr(), out.as_mut_ptr(), NR, true) };
        right &= out.iter().zip(&want).all(|(o, w)| *o == 2.0 * w);
        right
    })
}

/// Runs `check` in a forked child and says how it ended: Ok when it returned true, Err with why otherwise (a
/// signal, or wrong values). `check` must take no lock and allocate nothing, as a fork of a threaded process must
/// (its buffers are made before the call).
fn in_child(check: &mut dyn FnMut() -> bool) -> Result<(), String> {
    // SAFETY: fork has no memory-safety preconditions; the child below only runs `check` on buffers that exist in
    // its copy of the address space and leaves with _exit, running no destructor and taking no lock.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => {
            return Err(format!(
                "could not fork the AMX self-check: {}",
                std::io::Error::last_os_error()
            ))
        }
        0 => {
            // A crash of the child must not leave a core file in the user's folder.
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: setrlimit reads the struct above and only changes this child's limit.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
            let right = check();
            // SAFETY: _exit ends the child at once, as a forked child of a threaded process should.
            unsafe { libc::_exit(if right { 0 } else { 3 }) }
        }
        _ => {}
    }
    let mut wstatus = 0;
    // SAFETY: pid is this process's child; wstatus is a valid int to write.
    if unsafe { libc::waitpid(pid, &mut wstatus, 0) } != pid {
        return Err(format!("lost the AMX self-check: {}", std::io::Error::last_os_error()));
    }
    if libc::WIFSIGNALED(wstatus) {
        return Err(format!(
            "the AMX self-check crashed (signal {})",
            libc::WTERMSIG(wstatus)
        ));
    }
    match libc::WEXITSTATUS(wstatus) {
        0 => Ok(()),
        _ => Err("the AMX self-check computed wrong values".into()),
    }
}

/// A (m × k) from the AVX512-BF16 panel layout (`panels`: panels of MR rows, pair p of row r at p·MR + r) into
/// AMX rows: row i's pairs at `i · lda`, `lda` = kp rounded up to [`STEP`], zero-padded (whole blocks of [`ROWS`]
/// rows).
pub fn rows_layout(panels: &[u32], m: usize, kp: usize) -> Vec<u32> {
    let lda = kp.div_ceil(STEP) * STEP;
    let mut rows = vec![0u32; m.div_ceil(ROWS) * ROWS * lda];
    for (panel, src) in panels.chunks_exact(kp * MR).enumerate() {
        for r in 0..MR {
            let dst = &mut rows[(panel * MR + r) * lda..][..kp];
            for (p, d) in dst.iter_mut().enumerate() {
                *d = src[p * MR + r];
            }
        }
    }
    rows
}

/// A tile configuration (palette 1), 64 bytes as `ldtilecfg` reads them.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// The two configurations of a call, side by side (the kernel reads the second 64 bytes after the first): tmm0–3
/// C (16 rows × 16 f32), tmm4–5 A (16 rows × 16 pairs), tmm6–7 B (16 pair rows × 16 columns); then the same for
/// the last `tail` pairs (A 16 rows × tail pairs, B tail rows), used only when tail > 0.
fn tile_configs(tail: usize) -> [TileConfig; 2] {
    let config = |pairs: usize| {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        let (c_tile, a_tile, b_tile) = ((16, 64), (16, 4 * pairs), (pairs, 64));
        for (i, (rows, colsb)) in [c_tile, c_tile, c_tile, c_tile, a_tile, a_tile, b_tile, b_tile]
            .into_iter()
            .enumerate()
        {
            c.rows[i] = rows as u8;
            c.colsb[i] = colsb as u16;
        }
        c
    };
    [config(STEP), config(tail.max(1))]
}

/// One k step of the kernel: two A tiles (rows 0–15, 16–31) and two B tiles (columns 0–15, 16–31) into the four
/// C tiles.
macro_rules! k_step {
    () => {
        concat!(
            "tileloadd tmm4, [{a} + {lda}*1]\n",
            "tileloadd tmm5, [{a2} + {lda}*1]\n",
            "tileloadd tmm6, [{b} + {ldb}*1]\n",
            "tileloadd tmm7, [{b} + {ldb}*1 + 64]\n",
            "tdpbf16ps tmm0, tmm4, tmm6\n",
            "tdpbf16ps tmm1, tmm4, tmm7\n",
            "tdpbf16ps tmm2, tmm5, tmm6\n",
            "tdpbf16ps tmm3, tmm5, tmm7\n",
        )
    };
}

/// The four C tiles from / to memory: rows 0–15 at `out`, 16–31 at `out2`, `ldc` bytes apart.
macro_rules! load_c {
    () => {
        concat!(
            "tileloadd tmm0, [{out} + {ldc}*1]\n",
            "tileloadd tmm1, [{out} + {ldc}*1 + 64]\n",
            "tileloadd tmm2, [{out2} + {ldc}*1]\n",
            "tileloadd tmm3, [{out2} + {ldc}*1 + 64]\n",
        )
    };
}
macro_rules! store_c {
    () => {
        concat!(
            "tilestored [{out} + {ldc}*1], tmm0\n",
            "tilestored [{out} + {ldc}*1 + 64], tmm1\n",
            "tilestored [{out2} + {ldc}*1], tmm2\n",
            "tilestored [{out2} + {ldc}*1 + 64], tmm3\n",
        )
    };
}

/// The AMX kernel (see [`TileFn`]): ROWS × NR of C a call.
///
/// # Safety
/// See [`TileFn`]: the buffers' sizes, and AMX ready in this process.
#[cfg(target_arch = "x86_64")]
// SAFETY (callers): see "# Safety"; `bf16::amx_block` and `self_check` pass buffers of the sizes it needs.
pub unsafe fn tile(kp: usize, a: *const u32, lda: usize, b: *const u32, out: *mut f32, ldc: usize, accumulate: bool) {
    let configs = tile_configs(kp % STEP);
    let (steps, tail) = (kp / STEP, kp % STEP);
    // Byte strides: A rows lda pairs apart, B rows NR pairs apart (128 bytes), C rows ldc f32 apart.
    let (lda_bytes, ldc_bytes) = (4 * lda, 4 * ldc);
    // What it touches: each A load 16 rows of ≤ 64 bytes of `a` (rows 0–15 from `a`, 16–31 from a + 16·lda, pairs
    // below lda), each B load 16 or `tail` rows of 64 bytes of the B panel (rows below kp), the C loads and stores
    // ROWS rows of 128 bytes, ldc apart, of `out` (rows 16–31 from out2). Reloading the configuration for the
    // tail zeroes the tiles, so C goes through `out` and back.
    // SAFETY: all of that lies inside the buffers the caller's contract names; the tile registers are not the
    // compiler's, and tilerelease leaves them free.
    unsafe {
        std::arch::asm!(
            "ldtilecfg [{cfg}]",
            "test {acc}, {acc}",
            "jz 5f",
            load_c!(),
            "jmp 6f",
            "5:",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "6:",
            "test {steps}, {steps}",
            "jz 3f",
            "2:",
            k_step!(),
            "add {a}, 64",
            "add {a2}, 64",
            "add {b}, 2048",
            "dec {steps}",
            "jnz 2b",
            "3:",
            store_c!(),
            "test {tail}, {tail}",
            "jz 4f",
            "ldtilecfg [{cfg} + 64]",
            load_c!(),
            k_step!(),
            store_c!(),
            "4:",
            "tilerelease",
            cfg = in(reg) configs.as_ptr(),
            a = inout(reg) a => _,
            a2 = inout(reg) a.add(16 * lda) => _,
            b = inout(reg) b => _,
            out = in(reg) out,
            out2 = in(reg) out.add(16 * ldc),
            lda = in(reg) lda_bytes,
            ldb = in(reg) 4 * NR,
            ldc = in(reg) ldc_bytes,
            acc = in(reg) usize::from(accumulate),
            steps = inout(reg) steps => _,
            tail = in(reg) tail,
            options(nostack),
        );
    }
}

/// A Rust model of [`tile`]: the same tile loads (strides, k steps, tail) and `tdpbf16ps`'s arithmetic (each
/// pair's two products added to the f32 sum in turn), so that the layouts and the addressing around the AMX
/// kernel are tested on every machine.
///
/// # Safety
/// See [`TileFn`] (no CPU requirement).
// SAFETY (callers): see "# Safety"; `bf16::amx_tile` and `self_check` pass buffers of the sizes it needs.
pub unsafe fn emulated_tile(
    kp: usize,
    a: *const u32,
    lda: usize,
    b: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let half = |v: u32, hi: bool| from_bf16(if hi { (v >> 16) as u16 } else { v as u16 });
    let mut c = [0f32; ROWS * NR];
    if accumulate {
        for (r, row) in c.chunks_exact_mut(NR).enumerate() {
            // SAFETY: row r < ROWS of `out` holds NR f32 at r·ldc (the caller's contract).
            unsafe { std::ptr::copy_nonoverlapping(out.add(r * ldc), row.as_mut_ptr(), NR) };
        }
    }
    for p0 in (0..kp).step_by(STEP) {
        let pairs = STEP.min(kp - p0);
        for r in 0..ROWS {
            for j in 0..NR {
                let mut s = c[r * NR + j];
                for p in p0..p0 + pairs {
                    // SAFETY: r < ROWS, p < kp ≤ lda, j < NR: inside the buffers the caller vouches for.
                    let (av, bv) = unsafe { (*a.add(r * lda + p), *b.add(p * NR + j)) };
                    s += half(av, false) * half(bv, false);
                    s += half(av, true) * half(bv, true);
                }
                c[r * NR + j] = s;
            }
        }
    }
    for (r, row) in c.chunks_exact(NR).enumerate() {
        // SAFETY: row r < ROWS of `out` holds NR f32 at r·ldc (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out.add(r * ldc), NR) };
    }
}

/// Taps of a 3 × 3 convolution.
pub const TAPS: usize = 9;

/// The operands of one direct-convolution block ([`super::direct`]): C (32 output channels × 32 positions) =
/// A (the 32 channels' weights, 9·C k-pairs each: steps of 16 channel pairs, each through the 9 taps) · B (for
/// step s of tap t, the 16 pair planes from `b[t] + 16·s` planes: its 32 positions), all of it in one kernel call,
/// C never leaving the tiles until the end. The
/// kernel reads the fields by their offsets, so their order is fixed (`repr(C)`, checked below).
#[repr(C, align(64))]
pub struct ConvCall {
    config: TileConfig,
    /// Per tap, the first pair plane at the block's first position plus the tap's offset.
    pub b: [*const u32; TAPS],
    /// k steps (16 pair planes) per tap: input channels / 32.
    pub steps: usize,
    /// Bytes from one pair plane to the next (a B tile's row stride).
    pub ldb: usize,
    /// Where C goes: row r (output channel r of the block) at `out + r · ldc` f32.
    pub out: *mut f32,
    /// C's row stride, in bytes.
    pub ldc_bytes: usize,
    /// The weights: row r of the block at `a + r · lda` u32 (k-pairs, tap after tap).
    pub a: *const u32,
    /// A's row stride, in bytes.
    pub lda_bytes: usize,
    /// Blocks of 32 positions, side by side (at least 1): block i reads B from `b[t] + 32·i` positions and writes C
    /// from `out + 32·i`, all with the same A. One tile configuration for all of them: loading it (which also
    /// zeroes every tile) for each block of a 64-channel layer cost a measurable share of the block's 18 k steps.
    pub blocks: usize,
}
const _: () = assert!(
    std::mem::offset_of!(ConvCall, b) == 64
        && std::mem::offset_of!(ConvCall, steps) == 136
        && std::mem::offset_of!(ConvCall, ldb) == 144
        && std::mem::offset_of!(ConvCall, out) == 152
        && std::mem::offset_of!(ConvCall, ldc_bytes) == 160
        && std::mem::offset_of!(ConvCall, a) == 168
        && std::mem::offset_of!(ConvCall, blocks) == 184
);

impl ConvCall {
    /// A call with every pointer null: the caller fills them in.
    pub fn new() -> ConvCall {
        ConvCall {
            config: tile_configs(0).into_iter().next().expect("two configs"),
            b: [std::ptr::null(); TAPS],
            steps: 0,
            ldb: 0,
            out: std::ptr::null_mut(),
            ldc_bytes: 0,
            a: std::ptr::null(),
            lda_bytes: 0,
            blocks: 1,
        }
    }
}

impl Default for ConvCall {
    fn default() -> Self {
        ConvCall::new()
    }
}

/// A direct-convolution block kernel (see [`ConvCall`]).
///
/// # Safety
/// `blocks ≥ 1` and `steps ≥ 1`; for each tap t and step s < steps, B rows `b[t] + (16·s + i)·ldb` bytes (i < 16)
/// must hold 32·blocks u32, A rows `a + r·lda` (r < 32) must hold 9·16·steps u32, `out` 32 rows of 32·blocks f32,
/// ldc apart; for [`conv_tile`], AMX must be Ready in this process ([`status`]).
// SAFETY (callers): see "# Safety"; `direct::block` checks the buffers and hands out `conv_tile` only when Ready.
pub type ConvTileFn = unsafe fn(call: &ConvCall);

/// The AMX direct-convolution kernel (see [`ConvTileFn`]).
///
/// # Safety
/// See [`ConvTileFn`].
#[cfg(target_arch = "x86_64")]
// SAFETY (callers): see "# Safety"; `direct::block` and `conv_self_check` pass operands of the sizes it needs.
pub unsafe fn conv_tile(call: &ConvCall) {
    // What it touches, for each block i < blocks: per k step 16 rows of 64 bytes of A from `a` and `a + 16·lda`
    // (moving 64 bytes a step, 9·steps steps in all), 16 rows of 128 bytes of B from b[tap] + 16·s·ldb + 128·i
    // bytes (ldb apart) for step s of each tap, and at the end 32 rows of 128 bytes of C at `out + 128·i` bytes,
    // ldc apart.
    // SAFETY: all of that lies inside the buffers the caller's contract names; the tile registers are not the
    // compiler's, and tilerelease leaves them free.
    unsafe {
        std::arch::asm!(
            "ldtilecfg [{p}]",
            "mov {cnt}, [{p} + 184]",
            "xor {boff}, {boff}",
            "mov {o}, [{p} + 152]",
            "mov {bstep}, {ldb}",
            "shl {bstep}, 4",
            "4:",
            "mov {a}, [{p} + 168]",
            "mov {a2}, {lda}",
            "shl {a2}, 4",
            "add {a2}, {a}",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "xor {soff}, {soff}",
            "mov {s}, [{p} + 136]",
            "2:",
            "xor {t}, {t}",
            "3:",
            "mov {bc}, [{p} + {t}*8 + 64]",
            "add {bc}, {soff}",
            "add {bc}, {boff}",
            "tileloadd tmm4, [{a} + {lda}*1]",
            "tileloadd tmm5, [{a2} + {lda}*1]",
            "tileloadd tmm6, [{bc} + {ldb}*1]",
            "tileloadd tmm7, [{bc} + {ldb}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a}, 64",
            "add {a2}, 64",
            "inc {t}",
            "cmp {t}, 9",
            "jne 3b",
            "add {soff}, {bstep}",
            "dec {s}",
            "jnz 2b",
            "mov {s}, [{p} + 160]",
            "tilestored [{o} + {s}*1], tmm0",
            "tilestored [{o} + {s}*1 + 64], tmm1",
            "mov {t}, {s}",
            "shl {t}, 4",
            "add {t}, {o}",
            "tilestored [{t} + {s}*1], tmm2",
            "tilestored [{t} + {s}*1 + 64], tmm3",
            "add {o}, 128",
            "add {boff}, 128",
            "dec {cnt}",
            "jnz 4b",
            "tilerelease",
            p = in(reg) call as *const ConvCall,
            lda = in(reg) call.lda_bytes,
            ldb = in(reg) call.ldb,
            a = out(reg) _,
            a2 = out(reg) _,
            bc = out(reg) _,
            s = out(reg) _,
            t = out(reg) _,
            soff = out(reg) _,
            bstep = out(reg) _,
            boff = out(reg) _,
            cnt = out(reg) _,
            o = out(reg) _,
            options(nostack),
        );
    }
}

/// A Rust model of [`conv_tile`]: the same tile loads and `tdpbf16ps`'s arithmetic, so that the direct
/// convolution's layouts are tested on every machine.
///
/// # Safety
/// See [`ConvTileFn`] (no CPU requirement).
// SAFETY (callers): see "# Safety"; `direct::block` and the tests pass operands of the sizes it needs.
pub unsafe fn emulated_conv_tile(call: &ConvCall) {
    let half = |v: u32, hi: bool| from_bf16(if hi { (v >> 16) as u16 } else { v as u16 });
    let (lda, ldb) = (call.lda_bytes / 4, call.ldb / 4);
    for block in 0..call.blocks {
        let mut c = [0f32; ROWS * NR];
        for s in 0..call.steps {
            for (tap, &b) in call.b.iter().enumerate() {
                let k0 = (s * TAPS + tap) * STEP;
                let b = b.wrapping_add(NR * block);
                for r in 0..ROWS {
                    for j in 0..NR {
                        let mut sum = c[r * NR + j];
                        for p in 0..STEP {
                            // SAFETY: r < 32, k0 + p < 9·16·steps, s < steps, p < 16, j < 32, block < blocks:
                            // inside the operands the caller vouches for.
                            let (av, bv) = unsafe { (*call.a.add(r * lda + k0 + p), *b.add((16 * s + p) * ldb + j)) };
                            sum += half(av, false) * half(bv, false);
                            sum += half(av, true) * half(bv, true);
                        }
                        c[r * NR + j] = sum;
                    }
                }
            }
        }
        for (r, row) in c.chunks_exact(NR).enumerate() {
            // SAFETY: row r < 32 of block `block` of `out` holds NR f32 at r·ldc + 32·block (the caller's contract).
            unsafe {
                let dst = call.out.byte_add(r * call.ldc_bytes).add(NR * block);
                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, NR)
            };
        }
    }
}

/// Whether the direct-convolution kernel runs here: [`status`], and then its own forked self-check (one block of
/// small integers against exact sums), run once. A failure turns the direct convolution off with a notice; the
/// Winograd convolution runs instead.
pub fn conv_status() -> &'static Amx {
    static STATUS: std::sync::OnceLock<Amx> = std::sync::OnceLock::new();
    STATUS.get_or_init(|| match status() {
        Amx::Ready => {
            #[cfg(target_arch = "x86_64")]
            let checked = conv_self_check(conv_tile);
            #[cfg(not(target_arch = "x86_64"))]
            let checked: Result<(), String> = Err("not x86-64".into());
            match checked {
                Ok(()) => Amx::Ready,
                Err(why) => {
                    eprintln!("note: the direct AMX convolution is not used ({why}); Winograd runs instead");
                    Amx::Refused(why)
                }
            }
        }
        other => other.clone(),
    })
}

/// [`self_check`] for a [`ConvTileFn`]: two blocks with 64 input channels (two steps through the taps), B planes
/// of 80 u32, in a forked child.
pub fn conv_self_check(kernel: ConvTileFn) -> Result<(), String> {
    const PLANE: usize = 80;
    const STEPS: usize = 2;
    let lda = STEPS * TAPS * STEP;
    let bf16 = |v: i32| u32::from(to_bf16(v as f32));
    let pair = |lo: i32, hi: i32| bf16(lo) | (bf16(hi) << 16);
    // Weight (row r, tap t, channel c) and input (channel c, position q), small integers: exact sums.
    let a_val = |r: usize, t: usize, c: usize| ((r * 5 + t * 3 + c * 2) % 7) as i32 - 3;
    let b_val = |c: usize, q: usize| ((c * 2 + q * 5) % 9) as i32 - 4;
    // k-pair k of a row: step k / (9·16), tap k / 16 % 9, channel pair 16·step + k % 16.
    let a: Vec<u32> = (0..ROWS * lda)
        .map(|i| {
            let (r, k) = (i / lda, i % lda);
            let (t, cp) = (k / STEP % TAPS, k / (TAPS * STEP) * STEP + k % STEP);
            pair(a_val(r, t, 2 * cp), a_val(r, t, 2 * cp + 1))
        })
        .collect();
    // Plane p holds channels 2p, 2p + 1 at positions 0..PLANE; tap t reads from position t.
    let b: Vec<u32> = (0..STEPS * STEP * PLANE)
        .map(|i| pair(b_val(2 * (i / PLANE), i % PLANE), b_val(2 * (i / PLANE) + 1, i % PLANE)))
        .collect();
    // Two blocks side by side: C is 32 rows × 64 positions.
    let want: Vec<f32> = (0..ROWS * 2 * NR)
        .map(|i| {
            let (r, q) = (i / (2 * NR), i % (2 * NR));
            let sum = (0..TAPS)
                .flat_map(|t| (0..2 * STEP * STEPS).map(move |c| (t, c)))
                .map(|(t, c)| a_val(r, t, c) * b_val(c, q + t))
                .sum::<i32>();
            sum as f32
        })
        .collect();
    let mut out = vec![f32::NAN; ROWS * 2 * NR];
    let mut call = ConvCall::new();
    call.b = std::array::from_fn(|t| b[t..].as_ptr());
    call.steps = STEPS;
    call.ldb = 4 * PLANE;
    call.ldc_bytes = 4 * 2 * NR;
    call.a = a.as_ptr();
    call.lda_bytes = 4 * lda;
    call.blocks = 2;
    in_child(&mut || {
        call.out = out.as_mut_ptr();
        // SAFETY: tap t reads planes 0..32 from position t, 64 positions (t + 64 ≤ PLANE); A is 32 rows of
        // 2·9·16 pairs; out 32 × 64. The caller vouches for the kernel's CPU requirements; a crash ends the child.
        unsafe { kernel(&call) };
        out.iter().zip(&want).all(|(o, w)| o == w)
    })
}
