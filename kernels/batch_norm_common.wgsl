// Shared by the four BatchNorm kernels (prepended by the Rust wrapper). x (and the output
// gradient) are [N, C, H, W] f32 tensors read through their strides — Burn's convolutions
// hand over channels-last views, which a copy to NCHW would cost a dispatch each — and the
// outputs are contiguous. A channel's M = N·H·W values are addressed by i in 0..M.
// Every kernel declares `info` = [elements, H·W, C, workgroups per grid row, ε (f32 bits),
// activation (0 none, 1 ReLU, 2 SiLU), batch statistics, M, W, x's 4 strides and plain-NCHW flag, the gradient's]. The per-channel
// kernels run one workgroup of 256 per channel; the element kernels one invocation per
// element. Both lay their workgroups over a 2-D grid (x = info[3] per row) to pass the
// 65,535 limit.

const WG: u32 = 256u;

var<workgroup> s_a: array<f32, 256>;
var<workgroup> s_b: array<f32, 256>;

fn workgroup_index(wid: vec3<u32>) -> u32 {
    return wid.x + wid.y * info[3];
}

// The offset of element (n, c, p = h·W + w) in the tensor described from info[base]: its
// 4 strides, then 1 when they are plain NCHW (then no division is needed).
fn offset(n: u32, c: u32, p: u32, base: u32) -> u32 {
    if (info[base + 4u] != 0u) {
        return (n * info[2] + c) * info[1] + p;
    }
    let h = p / info[8];
    let w = p - h * info[8];
    return n * info[base] + c * info[base + 1u] + h * info[base + 2u] + w * info[base + 3u];
}

const X: u32 = 9u;
const GRAD: u32 = 14u;

// A walk over one channel's values i = start, start + WG, … as (n, h, w) coordinates,
// advanced without divisions (the per-channel loops are the kernels' hot spots).
struct Walk {
    n: u32,
    h: u32,
    w: u32,
    // The step: WG values as (n, h, w).
    sn: u32,
    sh: u32,
    sw: u32,
    // H and W.
    ht: u32,
    wd: u32,
}

fn walk_from(i: u32) -> Walk {
    let hw = info[1];
    let wd = info[8];
    let p = i % hw;
    let r = WG % hw;
    return Walk(i / hw, p / wd, p % wd, WG / hw, r / wd, r % wd, hw / wd, wd);
}

fn walk_next(a: Walk) -> Walk {
    let wd = a.wd;
    let ht = a.ht;
    var b = a;
    b.w = a.w + a.sw;
    b.h = a.h + a.sh;
    b.n = a.n + a.sn;
    if (b.w >= wd) {
        b.w = b.w - wd;
        b.h = b.h + 1u;
    }
    if (b.h >= ht) {
        b.h = b.h - ht;
        b.n = b.n + 1u;
    }
    return b;
}

// The strides of the tensor described from info[base], as (n, c, h, w).
fn strides_at(base: u32) -> vec4<u32> {
    return vec4<u32>(info[base], info[base + 1u], info[base + 2u], info[base + 3u]);
}

// The offset at the walk's position in channel c of a tensor with strides s.
fn walk_offset(a: Walk, c: u32, s: vec4<u32>) -> u32 {
    return a.n * s.x + c * s.y + a.h * s.z + a.w * s.w;
}

// (n, c, p) of element e of the contiguous output.
fn decode(e: u32) -> vec3<u32> {
    let q = e / info[1];
    let n = q / info[2];
    return vec3<u32>(n, q - n * info[2], e - q * info[1]);
}

fn epsilon() -> f32 {
    return bitcast<f32>(info[4]);
}

// Tree sum of s_a and s_b over the workgroup; the totals end in s_a[0], s_b[0].
// Call from uniform control flow.
fn reduce_pair(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            s_a[lid] = s_a[lid] + s_a[lid + stride];
            s_b[lid] = s_b[lid] + s_b[lid + stride];
        }
        workgroupBarrier();
    }
}

// Burn's `batch_norm` expression: (x − mean) / sqrt(var + ε) · γ + β.
fn affine(v: f32, mean: f32, sigma: f32, gamma: f32, beta: f32) -> f32 {
    return (v - mean) / sigma * gamma + beta;
}

// The activation info[5] names, of the affine value z: none, ReLU, or SiLU z · sigmoid(z).
fn activate(z: f32) -> f32 {
    if (info[5] == 1u) {
        return max(z, 0.0);
    }
    if (info[5] == 2u) {
        return z / (1.0 + exp(-z));
    }
    return z;
}

// The output gradient g through the activation at z: masked by the ReLU, or times SiLU's
// derivative s · (1 + z · (1 − s)), s = sigmoid(z).
fn through_activation(z: f32, g: f32) -> f32 {
    if (info[5] == 1u) {
        return select(g, 0.0, z <= 0.0);
    }
    if (info[5] == 2u) {
        let s = 1.0 / (1.0 + exp(-z));
        return g * (s * (1.0 + z * (1.0 - s)));
    }
    return g;
}
