// Shared by the three direct-convolution kernels (prepended by the Rust wrapper): a
// stride-1 convolution with a square k×k kernel, "same" padding p = (k − 1) / 2, one
// group, no dilation, on contiguous NCHW f32 tensors, x [N, C, H, W], weight [O, C, k, k],
// y [N, O, H, W]. One invocation per output value, looping over its terms. Every kernel
// declares `info` = [N, C, H, W, O, k, p, invocations, workgroups per grid row]; the
// workgroups lie on a 2-D grid (x = info[8] per row) to pass the 65,535 limit.

const WG: u32 = 256u;

struct Conv {
    batch: u32,
    channels: u32,
    h: u32,
    w: u32,
    outputs: u32,
    k: u32,
    p: i32,
}

// The convolution's sizes from `info`.
fn conv() -> Conv {
    return Conv(info[0], info[1], info[2], info[3], info[4], info[5], i32(info[6]));
}

// This invocation's index, or `info[7]` and more when it has no value to compute.
fn invocation(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * info[8] + wid.x) * WG + lid;
}

// Whether `v` (a signed row or column) lies in 0..size.
fn inside(v: i32, size: u32) -> bool {
    return v >= 0 && v < i32(size);
}
