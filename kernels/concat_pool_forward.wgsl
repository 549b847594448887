// Concat-pool forward: x [N, C, H, W] (contiguous) -> out [N, 2C] = [avg | max].
// Dispatch: one workgroup of 256 per plane, planes = N·C laid over a 2-D grid
// (x = info[3] workgroups per row) to pass the 65,535 limit.

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
    let plane = workgroup_index(wid);
    let valid = plane < planes;
    reduce_plane(valid, plane * hw, hw, lid);
    if (valid && lid == 0u) {
        let n = plane / channels;
        let c = plane % channels;
        out_buf[n * 2u * channels + c] = {{elem}}(s_sum[0] / f32(hw));
        out_buf[n * 2u * channels + channels + c] = {{elem}}(s_max[0]);
    }
}
