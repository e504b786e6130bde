//! The packed-weight operations on the GPU (wgpu, and every other cubecl runtime): the
//! weights stay in their block format in GPU memory and the kernels decode them where they
//! read them.
//!
//! - Few activation rows: one workgroup per output row; its threads stride along the row,
//!   decoding each weight as they multiply, and reduce in shared memory.
//! - Many rows: the matrix is decoded to a temporary f32 matrix and multiplied with burn's
//!   tuned matmul; the temporary lives for that one product.
//!
//! The decoding follows [`crate::dequant`] element for element; the tests compare the two.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::format::GgmlType;
use crate::ops::{PackedLayout, PackedOps};

/// The block types the kernels decode; each is compiled into its own kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
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

impl BlockKind {
    fn of(ty: GgmlType) -> BlockKind {
        match ty {
            GgmlType::F32 => BlockKind::F32,
            GgmlType::F16 => BlockKind::F16,
            GgmlType::BF16 => BlockKind::BF16,
            GgmlType::Q4_0 => BlockKind::Q4_0,
            GgmlType::Q4_1 => BlockKind::Q4_1,
            GgmlType::Q5_0 => BlockKind::Q5_0,
            GgmlType::Q5_1 => BlockKind::Q5_1,
            GgmlType::Q8_0 => BlockKind::Q8_0,
            GgmlType::Q2_K => BlockKind::Q2K,
            GgmlType::Q3_K => BlockKind::Q3K,
            GgmlType::Q4_K => BlockKind::Q4K,
            GgmlType::Q5_K => BlockKind::Q5K,
            GgmlType::Q6_K => BlockKind::Q6K,
            other => panic!("no GPU kernel decodes {other}"),
        }
    }
}

/// Byte `off` of the packed words.
#[cube]
fn byte(w: &Tensor<u32>, off: u32) -> u32 {
    (w[(off / 4) as usize] >> ((off % 4) * 8)) & 0xFF
}

/// The little-endian u16 at byte `off`.
#[cube]
fn half_bits(w: &Tensor<u32>, off: u32) -> u32 {
    byte(w, off) | (byte(w, off + 1) << 8)
}

/// An IEEE half from its bits.
#[cube]
#[allow(unused_assignments)]
fn half_to_f32(h: u32) -> f32 {
    let exp = (h >> 10) & 0x1F;
    let mant = h & 0x3FF;
    let mut v = f32::new(0.0);
    if exp == 0 {
        // zero or subnormal: mant · 2^-24
        v = f32::cast_from(mant) * f32::new(5.960_464_5e-8);
    } else if exp == 31 {
        v = f32::reinterpret(0x7F80_0000u32 | (mant << 13));
    } else {
        v = f32::reinterpret(((exp + 112) << 23) | (mant << 13));
    }
    if (h >> 15) & 1 == 1 {
        v = -v;
    }
    v
}

#[cube]
fn half_at(w: &Tensor<u32>, off: u32) -> f32 {
    half_to_f32(half_bits(w, off))
}

/// The little-endian u32 at byte `off` (any alignment).
#[cube]
fn word_at(w: &Tensor<u32>, off: u32) -> u32 {
    byte(w, off) | (byte(w, off + 1) << 8) | (byte(w, off + 2) << 16) | (byte(w, off + 3) << 24)
}

/// `get_scale_min_k4`: scale (`want_min == 0`) or minimum of sub-block `j` of a Q4_K/Q5_K
/// block whose 12 scale bytes start at `s`.
#[cube]
#[allow(unused_assignments)]
fn scale_min_k4(w: &Tensor<u32>, s: u32, j: u32, want_min: u32) -> u32 {
    let mut v = 0u32;
    if j < 4 {
        v = byte(w, s + j + 4 * want_min) & 63;
    } else {
        let q = byte(w, s + j + 4);
        let hi = byte(w, s + j - 4 * (1 - want_min)) >> 6;
        if want_min == 0 {
            v = (q & 0xF) | (hi << 4);
        } else {
            v = (q >> 4) | (hi << 4);
        }
    }
    v
}

/// Element `k` of the row whose bytes start at `base`.
#[cube]
fn decode(w: &Tensor<u32>, base: u32, k: u32, #[comptime] kind: BlockKind) -> f32 {
    match kind {
        BlockKind::F32 => f32::reinterpret(word_at(w, base + 4 * k)),
        BlockKind::F16 => half_at(w, base + 2 * k),
        BlockKind::BF16 => f32::reinterpret(half_bits(w, base + 2 * k) << 16),
        BlockKind::Q4_0 => {
            let b = base + (k / 32) * 18;
            let j = k % 32;
            let q = byte(w, b + 2 + j % 16) >> (4 * (j / 16));
            half_at(w, b) * (f32::cast_from(q & 0xF) - f32::new(8.0))
        }
        BlockKind::Q4_1 => {
            let b = base + (k / 32) * 20;
            let j = k % 32;
            let q = byte(w, b + 4 + j % 16) >> (4 * (j / 16));
            half_at(w, b) * f32::cast_from(q & 0xF) + half_at(w, b + 2)
        }
        BlockKind::Q5_0 => {
            let b = base + (k / 32) * 22;
            let j = k % 32;
            let h = (word_at(w, b + 2) >> j) & 1;
            let q = ((byte(w, b + 6 + j % 16) >> (4 * (j / 16))) & 0xF) | (h << 4);
            half_at(w, b) * (f32::cast_from(q) - f32::new(16.0))
        }
        BlockKind::Q5_1 => {
            let b = base + (k / 32) * 24;
            let j = k % 32;
            let h = (word_at(w, b + 4) >> j) & 1;
            let q = ((byte(w, b + 8 + j % 16) >> (4 * (j / 16))) & 0xF) | (h << 4);
            half_at(w, b) * f32::cast_from(q) + half_at(w, b + 2)
        }
        BlockKind::Q8_0 => {
            let b = base + (k / 32) * 34;
            let q = byte(w, b + 2 + k % 32);
            let signed = i32::cast_from(q) - i32::cast_from((q >> 7) * 256);
            half_at(w, b) * f32::cast_from(signed)
        }
        BlockKind::Q2K => {
            let b = base + (k / 256) * 84;
            let j = k % 256;
            let n = j / 128;
            let jj = (j % 128) / 32;
            let l = j % 32;
            let sc = byte(w, b + j / 16);
            let u = (byte(w, b + 16 + 32 * n + l) >> (2 * jj)) & 3;
            half_at(w, b + 80) * f32::cast_from((sc & 0xF) * u)
                - half_at(w, b + 82) * f32::cast_from(sc >> 4)
        }
        BlockKind::Q3K => {
            let b = base + (k / 256) * 110;
            let j = k % 256;
            let g = j / 16;
            let lo = (byte(w, b + 96 + g % 8) >> (4 * (g / 8))) & 0xF;
            let hi = (byte(w, b + 104 + g % 4) >> (2 * (g / 4))) & 3;
            let scale = i32::cast_from(lo | (hi << 4)) - 32;
            let n = j / 128;
            let jj = (j % 128) / 32;
            let l = j % 32;
            let u = (byte(w, b + 32 + 32 * n + l) >> (2 * jj)) & 3;
            let hbit = (byte(w, b + l) >> (4 * n + jj)) & 1;
            let v = i32::cast_from(u) - 4 + 4 * i32::cast_from(hbit);
            half_at(w, b + 108) * f32::cast_from(scale * v)
        }
        BlockKind::Q4K => {
            let b = base + (k / 256) * 144;
            let j = k % 256;
            let g = j / 64;
            let sub = (j % 64) / 32;
            let l = j % 32;
            let u = (byte(w, b + 16 + 32 * g + l) >> (4 * sub)) & 0xF;
            let sc = scale_min_k4(w, b + 4, 2 * g + sub, 0);
            let m = scale_min_k4(w, b + 4, 2 * g + sub, 1);
            half_at(w, b) * f32::cast_from(sc * u) - half_at(w, b + 2) * f32::cast_from(m)
        }
        BlockKind::Q5K => {
            let b = base + (k / 256) * 176;
            let j = k % 256;
            let g = j / 64;
            let sub = (j % 64) / 32;
            let l = j % 32;
            let lo = (byte(w, b + 48 + 32 * g + l) >> (4 * sub)) & 0xF;
            let hi = (byte(w, b + 16 + l) >> (2 * g + sub)) & 1;
            let sc = scale_min_k4(w, b + 4, 2 * g + sub, 0);
            let m = scale_min_k4(w, b + 4, 2 * g + sub, 1);
            half_at(w, b) * f32::cast_from(sc * (lo | (hi << 4)))
                - half_at(w, b + 2) * f32::cast_from(m)
        }
        BlockKind::Q6K => {
            let b = base + (k / 256) * 210;
            let j = k % 256;
            let n = j / 128;
            let p = (j % 128) / 32;
            let l = j % 32;
            let ql = (byte(w, b + 64 * n + 32 * (p % 2) + l) >> (4 * (p / 2))) & 0xF;
            let qh = (byte(w, b + 128 + 32 * n + l) >> (2 * p)) & 3;
            let sc = byte(w, b + 192 + j / 16);
            let sc = i32::cast_from(sc) - i32::cast_from((sc >> 7) * 256);
            let u = i32::cast_from(ql | (qh << 4)) - 32;
            half_at(w, b + 208) * f32::cast_from(sc * u)
        }
    }
}

#[cube(launch)]
fn dequantize_kernel(
    w: &Tensor<u32>,
    out: &mut Tensor<f32>,
    cols: u32,
    row_bytes: u32,
    #[comptime] kind: BlockKind,
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let pos = ABSOLUTE_POS as u32;
    let r = pos / cols;
    let k = pos % cols;
    out[ABSOLUTE_POS] = decode(w, r * row_bytes, k, kind);
}

#[cube(launch)]
fn rows_kernel<I: Int>(
    ids: &Tensor<I>,
    w: &Tensor<u32>,
    out: &mut Tensor<f32>,
    cols: u32,
    row_bytes: u32,
    #[comptime] kind: BlockKind,
    #[define(I)] _id_type: ElemType,
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let pos = ABSOLUTE_POS as u32;
    let j = pos / cols;
    let k = pos % cols;
    let r = u32::cast_from(ids[j as usize]);
    out[ABSOLUTE_POS] = decode(w, r * row_bytes, k, kind);
}

/// Threads per workgroup of the row kernel.
const ROW_THREADS: u32 = 128;

/// `y[i, r] = Σ_k x[i, k] · W[r, k]`, one workgroup per output row `r`.
#[cube(launch)]
fn matvec_kernel(
    x: &Tensor<f32>,
    w: &Tensor<u32>,
    y: &mut Tensor<f32>,
    m: u32,
    rows: u32,
    cols: u32,
    row_bytes: u32,
    #[comptime] kind: BlockKind,
) {
    let r = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if r >= rows {
        terminate!();
    }
    let t = UNIT_POS_X;
    let mut partial = Shared::new_slice(ROW_THREADS as usize);
    let base = r * row_bytes;
    for i in 0..m {
        let mut acc = f32::new(0.0);
        let mut k = t;
        while k < cols {
            acc += x[(i * cols + k) as usize] * decode(w, base, k, kind);
            k += CUBE_DIM_X;
        }
        partial[t as usize] = acc;
        sync_cube();
        // a runtime value (ROW_THREADS itself would be a compile-time constant)
        let mut stride = CUBE_DIM_X / 2;
        while stride > 0 {
            if t < stride {
                let sum = partial[t as usize] + partial[(t + stride) as usize];
                partial[t as usize] = sum;
            }
            sync_cube();
            stride /= 2;
        }
        if t == 0 {
            y[(i * rows + r) as usize] = partial[0];
        }
        sync_cube();
    }
}

/// Up to this many activation rows use the row kernel; more decode the matrix and use
/// burn's matmul.
const MATVEC_MAX_ROWS: usize = 4;

fn u32_of(v: usize, what: &str) -> u32 {
    u32::try_from(v)
        .unwrap_or_else(|_| panic!("{what} {v} is beyond the GPU kernels' 32-bit offsets"))
}

fn row_bytes(layout: &PackedLayout) -> u32 {
    let rb = layout.ty.row_bytes(layout.cols).expect("whole blocks");
    u32_of(layout.byte_len().expect("size"), "matrix bytes");
    u32_of(rb, "row bytes")
}

fn dequantize_on_gpu(blocks: CubeTensor, layout: &PackedLayout) -> CubeTensor {
    let blocks = into_contiguous(blocks);
    let client = blocks.client.clone();
    let n = layout.rows * layout.cols;
    let out = empty_device_dtype(
        client.clone(),
        blocks.device.clone(),
        Shape::new([layout.rows, layout.cols]),
        DType::F32,
    );
    let cube_dim = CubeDim::new_1d(256);
    let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
    dequantize_kernel::launch(
        &client,
        cube_count,
        cube_dim,
        blocks.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        u32_of(layout.cols, "columns"),
        row_bytes(layout),
        BlockKind::of(layout.ty),
    );
    out
}

fn flatten(x: CubeTensor, cols: usize) -> (CubeTensor, Shape) {
    let shape = x.shape();
    let m = shape.num_elements() / cols.max(1);
    let x = into_contiguous(x);
    (CubeBackend::float_reshape(x, Shape::new([m, cols])), shape)
}

impl PackedOps for CubeBackend {
    fn packed_linear(x: CubeTensor, blocks: CubeTensor, layout: PackedLayout) -> CubeTensor {
        let (x, in_shape) = flatten(x, layout.cols);
        let m = x.shape()[0];
        let mut out_dims: Vec<usize> = in_shape.iter().copied().collect();
        *out_dims.last_mut().expect("rank ≥ 1") = layout.rows;
        if m > MATVEC_MAX_ROWS {
            let w = dequantize_on_gpu(blocks, &layout);
            let y = CubeBackend::float_matmul(x, CubeBackend::float_transpose(w));
            return CubeBackend::float_reshape(y, Shape::from(out_dims));
        }
        let blocks = into_contiguous(blocks);
        let client = x.client.clone();
        let y = empty_device_dtype(
            client.clone(),
            x.device.clone(),
            Shape::new([m, layout.rows]),
            DType::F32,
        );
        let rows = u32_of(layout.rows, "rows");
        let gx = rows.min(65_535);
        let gy = rows.div_ceil(65_535);
        matvec_kernel::launch(
            &client,
            CubeCount::Static(gx, gy, 1),
            CubeDim::new_1d(ROW_THREADS),
            x.into_tensor_arg(),
            blocks.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            m as u32,
            rows,
            u32_of(layout.cols, "columns"),
            row_bytes(&layout),
            BlockKind::of(layout.ty),
        );
        CubeBackend::float_reshape(y, Shape::from(out_dims))
    }

    fn packed_linear_transposed(
        g: CubeTensor,
        blocks: CubeTensor,
        layout: PackedLayout,
    ) -> CubeTensor {
        let (g, in_shape) = flatten(g, layout.rows);
        let mut out_dims: Vec<usize> = in_shape.iter().copied().collect();
        *out_dims.last_mut().expect("rank ≥ 1") = layout.cols;
        let w = dequantize_on_gpu(blocks, &layout);
        let y = CubeBackend::float_matmul(g, w);
        CubeBackend::float_reshape(y, Shape::from(out_dims))
    }

    fn packed_rows(ids: CubeTensor, blocks: CubeTensor, layout: PackedLayout) -> CubeTensor {
        let ids = into_contiguous(ids);
        let blocks = into_contiguous(blocks);
        let n = ids.shape().num_elements();
        let client = blocks.client.clone();
        let out = empty_device_dtype(
            client.clone(),
            blocks.device.clone(),
            Shape::new([n, layout.cols]),
            DType::F32,
        );
        let cube_dim = CubeDim::new_1d(256);
        let cube_count = calculate_cube_count_elemwise(&client, n * layout.cols, cube_dim);
        let ids_type = burn::backend::cubecl::dtype_to_storage_type(ids.dtype);
        rows_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            ids.into_tensor_arg(),
            blocks.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            u32_of(layout.cols, "columns"),
            row_bytes(&layout),
            BlockKind::of(layout.ty),
            ids_type,
        );
        out
    }

    fn packed_dequantize(blocks: CubeTensor, layout: PackedLayout) -> CubeTensor {
        dequantize_on_gpu(blocks, &layout)
    }
}
