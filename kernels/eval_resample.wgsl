// Eval preprocessing: packed RGB8 images of different sizes -> normalised [N, 3, S, S] f32,
// torchvision's Resize(shorter side) + CenterCrop(S) + ToTensor + Normalize on PIL images,
// bit-exact with Pillow's antialiased bilinear resize (libImaging/Resample.c): a separable
// convolution in 22-bit fixed point, rounded to 8 bits after the horizontal pass and after
// the vertical one. The taps (Pillow's precompute_coeffs + normalize_coeffs_8bpc) come from
// the host (crates/data/src/transform.rs computes them in f64 as Pillow does); this kernel
// only sums. One invocation per output pixel (all three channels); grid (ceil(S²/256), N, 1).
// Mirrors petal_data::transform::EvalTransform::apply step for step.

// All images' bytes, 4 per word, little endian.
@group(0) @binding(0) var<storage, read_write> src_buf: array<u32>;
// [N, S, 0, 0] then per image [byte offset, width, flip (1 = read the image mirrored), taps base].
@group(0) @binding(1) var<storage, read_write> info: array<u32>;
// Per image at its taps base: [kh, kv], then S columns of [xmin, n, kh taps], then S rows
// of [ymin, n, kv taps]. n = 0 marks a crop column / row outside the resized image (zero
// padding). Taps are Pillow's fixed-point coefficients (sum 2^22).
@group(0) @binding(2) var<storage, read_write> taps: array<i32>;
// [mean r, g, b, std r, g, b].
@group(0) @binding(3) var<storage, read_write> prm: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_buf: array<f32>;

const META_HEADER: u32 = 4u;
const PRECISION_BITS: u32 = 22u;
const HALF: i32 = 2097152; // 1 << (PRECISION_BITS - 1)

fn byte_at(o: u32) -> i32 {
    return i32((src_buf[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu);
}

fn clip8(v: vec3<i32>) -> vec3<i32> {
    return clamp(v >> vec3<u32>(PRECISION_BITS), vec3<i32>(0), vec3<i32>(255));
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = wid.y;
    let size = info[1];
    let plane = size * size;
    let pix = wid.x * 256u + lid;
    if (n >= info[0] || pix >= plane) {
        return;
    }
    let m = META_HEADER + 4u * n;
    let base = info[m];
    let w = info[m + 1u];
    let flip = info[m + 2u] != 0u;
    let t = info[m + 3u];
    let kh = u32(taps[t]);
    let kv = u32(taps[t + 1u]);
    let x = pix % size;
    let y = pix / size;
    let col = t + 2u + x * (2u + kh);
    let row = t + 2u + size * (2u + kh) + y * (2u + kv);
    let xmin = u32(taps[col]);
    let nx = u32(taps[col + 1u]);
    let ymin = u32(taps[row]);
    let ny = u32(taps[row + 1u]);

    var v = vec3<i32>(0);
    if (nx > 0u && ny > 0u) {
        var acc = vec3<i32>(HALF);
        for (var j = 0u; j < ny; j = j + 1u) {
            // The horizontal pass of source row ymin + j at this column, rounded to 8 bits.
            var h = vec3<i32>(HALF);
            let r = base + 3u * (ymin + j) * w;
            for (var i = 0u; i < nx; i = i + 1u) {
                let k = taps[col + 2u + i];
                let sx = xmin + i;
                let p = r + 3u * select(sx, w - 1u - sx, flip);
                h = h + k * vec3<i32>(byte_at(p), byte_at(p + 1u), byte_at(p + 2u));
            }
            acc = acc + taps[row + 2u + j] * clip8(h);
        }
        v = clip8(acc);
    }

    // ToTensor + Normalize, in f32 as torchvision computes them.
    let nmean = vec3<f32>(prm[0], prm[1], prm[2]);
    let nstd = vec3<f32>(prm[3], prm[4], prm[5]);
    let o = (vec3<f32>(v) / 255.0 - nmean) / nstd;
    let out = n * 3u * plane + pix;
    out_buf[out] = o.x;
    out_buf[out + plane] = o.y;
    out_buf[out + 2u * plane] = o.z;
}
