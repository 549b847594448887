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
    let channels = info[1];
    let h = info[2];
    let w = info[3];
    let outputs = info[4];
    let k = info[5];
    let p = i32(info[6]);
    let s = i % w;
    let r = (i / w) % h;
    let o = (i / (w * h)) % outputs;
    let n = i / (w * h * outputs);
    var acc = 0.0;
    for (var c = 0u; c < channels; c = c + 1u) {
        let plane = (n * channels + c) * h * w;
        let taps = (o * channels + c) * k * k;
        for (var a = 0u; a < k; a = a + 1u) {
            let y = i32(r) + i32(a) - p;
            if (!inside(y, h)) {
                continue;
            }
            for (var b = 0u; b < k; b = b + 1u) {
                let x = i32(s) + i32(b) - p;
                if (inside(x, w)) {
                    acc = acc + w_buf[taps + a * k + b] * x_buf[plane + u32(y) * w + u32(x)];
                }
            }
        }
    }
    out_buf[i] = acc;
}
