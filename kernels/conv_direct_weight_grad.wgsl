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
    let batch = info[0];
    let channels = info[1];
    let h = info[2];
    let w = info[3];
    let outputs = info[4];
    let k = info[5];
    let p = i32(info[6]);
    let b = i % k;
    let a = (i / k) % k;
    let c = (i / (k * k)) % channels;
    let o = i / (k * k * channels);
    // Output rows r with 0 ≤ r + a − p < h, columns s with 0 ≤ s + b − p < w.
    let r0 = u32(max(p - i32(a), 0));
    let r1 = u32(max(min(i32(h) + p - i32(a), i32(h)), 0));
    let s0 = u32(max(p - i32(b), 0));
    let s1 = u32(max(min(i32(w) + p - i32(b), i32(w)), 0));
    var acc = 0.0;
    for (var n = 0u; n < batch; n = n + 1u) {
        let gplane = (n * outputs + o) * h * w;
        let xplane = (n * channels + c) * h * w;
        for (var r = r0; r < r1; r = r + 1u) {
            let y = u32(i32(r) + i32(a) - p);
            for (var s = s0; s < s1; s = s + 1u) {
                let x = u32(i32(s) + i32(b) - p);
                acc = acc + grad[gplane + r * w + s] * x_buf[xplane + y * w + x];
            }
        }
    }
    out_buf[i] = acc;
}
