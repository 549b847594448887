// Direct convolution, weight gradient: dw[o, c, i, j] = Σ_n Σ_(r, s) dy[n, o, r, s] · x[n, c, r + i − p, s + j − p],
// one invocation per weight, over the rows and columns where the tap stays inside x.

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = invocation(wid, lid);
    if (i >= info[7]) {
        return;
    }
    let d = conv();
    let b = i % d.k;
    let a = (i / d.k) % d.k;
    let c = (i / (d.k * d.k)) % d.channels;
    let o = i / (d.k * d.k * d.channels);
    // Output rows r with 0 ≤ r + a − p < H, columns s with 0 ≤ s + b − p < W.
    let r0 = u32(max(d.p - i32(a), 0));
    let r1 = u32(max(min(i32(d.h) + d.p - i32(a), i32(d.h)), 0));
    let s0 = u32(max(d.p - i32(b), 0));
    let s1 = u32(max(min(i32(d.w) + d.p - i32(b), i32(d.w)), 0));
    var acc = 0.0;
    for (var n = 0u; n < d.batch; n = n + 1u) {
        let gplane = (n * d.outputs + o) * d.h * d.w;
        let xplane = (n * d.channels + c) * d.h * d.w;
        for (var r = r0; r < r1; r = r + 1u) {
            let y = u32(i32(r) + i32(a) - d.p);
            for (var s = s0; s < s1; s = s + 1u) {
                let x = u32(i32(s) + i32(b) - d.p);
                acc = acc + grad[gplane + r * d.w + s] * x_buf[xplane + y * d.w + x];
            }
        }
    }
    out_buf[i] = acc;
}
