// Concat-pool forward for small planes (H·W ≤ 512, e.g. the 7×7 maps of classifier
// backbones): one invocation per (n, c) plane, looping over it — no shared memory and no
// barriers, which wastes nothing when a plane is smaller than a workgroup. Same order
// rules as the workgroup kernel (`better` in concat_pool_common.wgsl).

@group(0) @binding(0) var<storage, read_write> x_buf: array<{{elem}}>;
@group(0) @binding(1) var<storage, read_write> out_buf: array<{{elem}}>;
// planes, H·W, C, workgroups per grid row
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let planes = info[0];
    let hw = info[1];
    let channels = info[2];
    let plane = workgroup_index(wid) * WG + lid;
    if (plane >= planes) {
        return;
    }
    let s = scan_plane(plane * hw, 0u, hw, 1u);
    let n = plane / channels;
    let c = plane % channels;
    out_buf[n * 2u * channels + c] = {{elem}}(s.sum / f32(hw));
    out_buf[n * 2u * channels + channels + c] = {{elem}}(s.max);
}
