//! ggml's tensor types and their dequantization to f32, equal bit for bit
//! to the `gguf` package's `gguf.quants.dequantize` (which transformers
//! uses to read GGUF files): the same products in the same order, each
//! rounded to f32 (Rust never fuses `a * b + c` into an FMA on its own).

use half::f16;

/// Values per k-quant super-block.
const QK_K: usize = 256;

/// ggml tensor types (the ids of ggml.h's `enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    /// The type of a ggml type id; `None` for types we do not read.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// The name ggml and llama.cpp use.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Values per block (1 for the plain float types).
    pub fn block_values(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes of `n` values; `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_values())
            .then(|| (n / self.block_values()).checked_mul(self.block_bytes()))
            .flatten()
    }

    /// Whether values are stored in blocks with shared scales.
    pub fn is_quantized(self) -> bool {
        self.block_values() > 1
    }
}

/// `n` values decoded from `data`, which holds exactly
/// `ty.bytes_for(n)` bytes (the reader checks this when it opens a file).
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_into(ty, data, &mut out);
    out
}

/// Decodes whole blocks of `data` into `out` (`out.len()` values, a whole
/// number of blocks; `data` at least their bytes), so callers can decode a
/// tensor a slice of rows at a time.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    let per = ty.block_values();
    let blocks = data.chunks_exact(ty.block_bytes());
    for (block, out) in blocks.zip(out.chunks_exact_mut(per)) {
        match ty {
            GgmlType::F32 => out[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            GgmlType::F16 => out[0] = half(block, 0),
            GgmlType::BF16 => {
                out[0] = f32::from_bits(u32::from(u16::from_le_bytes([block[0], block[1]])) << 16)
            }
            GgmlType::Q4_0 => q4_0(block, out),
            GgmlType::Q4_1 => q4_1(block, out),
            GgmlType::Q5_0 => q5_0(block, out),
            GgmlType::Q5_1 => q5_1(block, out),
            GgmlType::Q8_0 => q8_0(block, out),
            GgmlType::Q2K => q2_k(block, out),
            GgmlType::Q3K => q3_k(block, out),
            GgmlType::Q4K => q4_k(block, out),
            GgmlType::Q5K => q5_k(block, out),
            GgmlType::Q6K => q6_k(block, out),
        }
    }
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The 4-bit value `j` of 32 packed in 16 bytes: low nibbles first, then
/// high nibbles.
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 0x0F
    } else {
        qs[j - 16] >> 4
    }
}

fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(nibble(&b[2..18], j) as i8 - 8);
    }
}

fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(nibble(&b[4..20], j)) + m;
    }
}

fn fifth_bits(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    let qh = fifth_bits(b, 2);
    for (j, o) in out.iter_mut().enumerate() {
        let q = nibble(&b[6..22], j) | ((((qh >> j) & 1) as u8) << 4);
        *o = d * f32::from(q as i8 - 16);
    }
}

fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = fifth_bits(b, 4);
    for (j, o) in out.iter_mut().enumerate() {
        let q = nibble(&b[8..24], j) | ((((qh >> j) & 1) as u8) << 4);
        *o = d * f32::from(q) + m;
    }
}

fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (o, &x) in out.iter_mut().zip(&b[2..34]) {
        *o = f32::from(x as i8) * d;
    }
}

/// Index `i` of a super-block stored as 2-bit planes: byte `(i / 128) * 32 +
/// i % 32` of `q`, shifted by `2 · ((i / 32) % 4)`.
fn crumb(q: &[u8], i: usize) -> u8 {
    (q[(i / 128) * 32 + i % 32] >> (2 * ((i / 32) % 4))) & 3
}

fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    for (k, group) in out.chunks_exact_mut(16).enumerate() {
        let dl = d * f32::from(scales[k] & 0x0F);
        let ml = dmin * f32::from(scales[k] >> 4);
        for (l, o) in group.iter_mut().enumerate() {
            *o = dl * f32::from(crumb(qs, k * 16 + l)) - ml;
        }
    }
}

fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    for (k, group) in out.chunks_exact_mut(16).enumerate() {
        let low = if k < 8 {
            scales[k] & 0x0F
        } else {
            scales[k - 8] >> 4
        };
        let high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        for (l, o) in group.iter_mut().enumerate() {
            let i = k * 16 + l;
            // The high bit subtracts 4 when it is clear.
            let h = ((hmask[i % 32] >> (i / 32)) & 1) ^ 1;
            *o = dl * f32::from(crumb(qs, i) as i8 - ((h << 2) as i8));
        }
    }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block.
fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3F, s[j + 4] & 0x3F)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30),
            (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30),
        )
    }
}

/// Index `i` of a super-block stored as 4-bit planes of 32 bytes: byte
/// `(i / 64) * 32 + i % 32`, low nibble for the first 32 of each 64.
fn k_nibble(qs: &[u8], i: usize) -> u8 {
    (qs[(i / 64) * 32 + i % 32] >> (4 * ((i / 32) % 2))) & 0x0F
}

fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (j, group) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(scales, j);
        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
        for (l, o) in group.iter_mut().enumerate() {
            *o = dl * f32::from(k_nibble(qs, j * 32 + l)) - ml;
        }
    }
}

fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (j, group) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(scales, j);
        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
        for (l, o) in group.iter_mut().enumerate() {
            let i = j * 32 + l;
            let q = k_nibble(qs, i) | (((qh[l] >> j) & 1) << 4);
            *o = dl * f32::from(q) - ml;
        }
    }
}

fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for (k, group) in out.chunks_exact_mut(16).enumerate() {
        let dl = d * f32::from(scales[k] as i8);
        for (l, o) in group.iter_mut().enumerate() {
            let i = k * 16 + l;
            let low = (ql[(i / 128) * 64 + i % 64] >> (4 * ((i / 64) % 2))) & 0x0F;
            let q = low | (crumb(qh, i) << 4);
            *o = dl * f32::from(q as i8 - 32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_are_ggml_s() {
        assert_eq!(GgmlType::Q4K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        for id in 0..40 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
            }
        }
    }

    #[test]
    fn q8_0_is_scale_times_int8() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = (-3i8) as u8;
        block[33] = 7;
        let v = dequantize(GgmlType::Q8_0, &block, 32);
        assert_eq!((v[0], v[1], v[31]), (-1.5, 0.0, 3.5));
    }
}
