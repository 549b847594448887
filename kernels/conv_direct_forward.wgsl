// Direct convolution, forward: y[n, o, r, s] = Σ_c Σ_(i, j) w[o, c, i, j] · x[n, c, r + i − p, s + j − p].

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> w_buf: array<f32>;
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
    let s = i % d.w;
    let r = (i / d.w) % d.h;
    let o = (i / (d.w * d.h)) % d.outputs;
    let n = i / (d.w * d.h * d.outputs);
    var acc = 0.0;
    for (var c = 0u; c < d.channels; c = c + 1u) {
        let plane = (n * d.channels + c) * d.h * d.w;
        let taps = (o * d.channels + c) * d.k * d.k;
        for (var a = 0u; a < d.k; a = a + 1u) {
            let y = i32(r) + i32(a) - d.p;
            if (!inside(y, d.h)) {
                continue;
            }
            for (var b = 0u; b < d.k; b = b + 1u) {
                let x = i32(s) + i32(b) - d.p;
                if (inside(x, d.w)) {
                    acc = acc + w_buf[taps + a * d.k + b] * x_buf[plane + u32(y) * d.w + u32(x)];
                }
            }
        }
    }
    out_buf[i] = acc;
}
