// Concat-pool backward: x [N, C, H, W], g_buf [N, 2C] = [d avg | d max] -> dx [N, C, H, W]:
// dx = d avg / (H·W) everywhere, plus d max at the plane's argmax (recomputed here with the
// forward's reduction, so the forward saves nothing).

@group(0) @binding(0) var<storage, read_write> x_buf: array<{{elem}}>;
@group(0) @binding(1) var<storage, read_write> g_buf: array<{{elem}}>;
@group(0) @binding(2) var<storage, read_write> out_buf: array<{{elem}}>;
// planes, H·W, C, workgroups per grid row
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

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
    let base = plane * hw;
    reduce_plane(valid, base, hw, lid);
    if (valid) {
        let n = plane / channels;
        let c = plane % channels;
        let g_avg = f32(g_buf[n * 2u * channels + c]) / f32(hw);
        let g_max = f32(g_buf[n * 2u * channels + channels + c]);
        let arg = s_idx[0];
        for (var i = lid; i < hw; i = i + WG) {
            var g = g_avg;
            if (i == arg) {
                g = g + g_max;
            }
            out_buf[base + i] = {{elem}}(g);
        }
    }
}
