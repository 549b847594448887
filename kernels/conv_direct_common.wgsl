// Shared by the three direct-convolution kernels (prepended by the Rust wrapper): a
// stride-1 convolution with a square k×k kernel, "same" padding p = (k − 1) / 2, one
// group, no dilation, on contiguous NCHW f32 tensors, x [N, C, H, W], weight [O, C, k, k],
// y [N, O, H, W]. One invocation per output value, looping over its terms. Every kernel
// declares `info` = [N, C, H, W, O, k, p, invocations, workgroups per grid row]; the
// workgroups lie on a 2-D grid (x = info[8] per row) to pass the 65,535 limit.

const WG: u32 = 256u;

fn invocation(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * info[8] + wid.x) * WG + lid;
}

// Whether `v` (a signed row or column) lies in 0..size.
fn inside(v: i32, size: u32) -> bool {
    return v >= 0 && v < i32(size);
}
