{{header}}
// Fused augmentation: packed RGB8 images of different sizes -> normalised [N, 3, S, S].
// One invocation per output pixel (all three channels); workgroup grid (ceil(S²/256), N, 1).
// The maths mirror crates/kernels/src/augment/reference.rs step for step (see mod.rs there
// for the semantics: affine map, bilinear + box supersampling, fill / reflect padding,
// brightness -> contrast -> saturation -> hue, normalise).

// All images' bytes, 4 per word, little endian.
@group(0) @binding(0) var<storage, read_write> src_buf: array<u32>;
// [N, S, 0, 0] then per image [byte offset, width, height, flags]; flags bit 0 = reflect,
// bits 8..15 = taps x, bits 16..23 = taps y.
@group(0) @binding(1) var<storage, read_write> info: array<u32>;
// [mean r, g, b, std r, g, b, 0, 0] then per image 16 floats: affine a0..a5, brightness,
// contrast, saturation, hue, gray mean, fill r, g, b (0..255), mix weight (1 = unmixed),
// mix partner, cut box y0, y1, x0, x1 (output pixels; the partner's alone inside).
@group(0) @binding(2) var<storage, read_write> prm: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_buf: array<{{elem}}>;

const PRM_HEADER: u32 = 8u;
const PRM_STRIDE: u32 = 20u;
const META_HEADER: u32 = 4u;

fn byte_at(o: u32) -> f32 {
    return f32((src_buf[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu);
}

fn pixel(base: u32, w: u32, x: u32, y: u32) -> vec3<f32> {
    let o = base + 3u * (y * w + x);
    return vec3<f32>(byte_at(o), byte_at(o + 1u), byte_at(o + 2u));
}

fn reflect_coord(s: f32, len: f32) -> f32 {
    let period = 2.0 * len;
    let t = s - period * floor(s / period);
    if (t > len) {
        return period - t;
    }
    return t;
}

struct Image {
    base: u32,
    w: u32,
    h: u32,
    reflect: bool,
    fill: vec3<f32>,
}

fn tap(img: Image, sx_in: f32, sy_in: f32) -> vec3<f32> {
    let wf = f32(img.w);
    let hf = f32(img.h);
    var sx = sx_in;
    var sy = sy_in;
    if (img.reflect) {
        sx = reflect_coord(sx, wf);
        sy = reflect_coord(sy, hf);
    } else if (!(sx >= 0.0 && sx <= wf && sy >= 0.0 && sy <= hf)) {
        return img.fill;
    }
    let px = sx - 0.5;
    let py = sy - 0.5;
    let x0 = floor(px);
    let y0 = floor(py);
    let fx = px - x0;
    let fy = py - y0;
    let wm = i32(img.w) - 1;
    let hm = i32(img.h) - 1;
    let ix0 = u32(clamp(i32(x0), 0, wm));
    let ix1 = u32(clamp(i32(x0 + 1.0), 0, wm));
    let iy0 = u32(clamp(i32(y0), 0, hm));
    let iy1 = u32(clamp(i32(y0 + 1.0), 0, hm));
    let top = (1.0 - fx) * pixel(img.base, img.w, ix0, iy0) + fx * pixel(img.base, img.w, ix1, iy0);
    let bottom = (1.0 - fx) * pixel(img.base, img.w, ix0, iy1) + fx * pixel(img.base, img.w, ix1, iy1);
    return (1.0 - fy) * top + fy * bottom;
}

fn gray(v: vec3<f32>) -> f32 {
    return 0.2989 * v.x + 0.587 * v.y + 0.114 * v.z;
}

fn clamp01(v: vec3<f32>) -> vec3<f32> {
    return clamp(v, vec3<f32>(0.0), vec3<f32>(1.0));
}

// torchvision's _rgb2hsv.
fn rgb2hsv(v: vec3<f32>) -> vec3<f32> {
    let r = v.x;
    let g = v.y;
    let b = v.z;
    let maxc = max(max(r, g), b);
    let minc = min(min(r, g), b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / select(maxc, 1.0, eqc);
    let d = select(cr, 1.0, eqc);
    let rc = (maxc - r) / d;
    let gc = (maxc - g) / d;
    let bc = (maxc - b) / d;
    var h: f32;
    if (maxc == r) {
        h = bc - gc;
    } else if (maxc == g) {
        h = 2.0 + rc - bc;
    } else {
        h = 4.0 + gc - rc;
    }
    h = h / 6.0 + 1.0;
    return vec3<f32>(h - floor(h), s, maxc);
}

// torchvision's _hsv2rgb.
fn hsv2rgb(c: vec3<f32>) -> vec3<f32> {
    let h6 = c.x * 6.0;
    let i = floor(h6);
    let f = h6 - i;
    let v = c.z;
    let p = clamp(v * (1.0 - c.y), 0.0, 1.0);
    let q = clamp(v * (1.0 - c.y * f), 0.0, 1.0);
    let t = clamp(v * (1.0 - c.y * (1.0 - f)), 0.0, 1.0);
    var k = i32(i) % 6;
    if (k < 0) {
        k = k + 6;
    }
    switch k {
        case 0: { return vec3<f32>(v, t, p); }
        case 1: { return vec3<f32>(q, v, p); }
        case 2: { return vec3<f32>(p, v, t); }
        case 3: { return vec3<f32>(p, q, v); }
        case 4: { return vec3<f32>(t, p, v); }
        default: { return vec3<f32>(v, p, q); }
    }
}

// Output pixel `pix` of sample `n` after sampling and colour jitter, on [0, 1].
fn augmented(n: u32, pix: u32, size: u32) -> vec3<f32> {
    let m = META_HEADER + 4u * n;
    let flags = info[m + 3u];
    let q = PRM_HEADER + PRM_STRIDE * n;
    var img: Image;
    img.base = info[m];
    img.w = info[m + 1u];
    img.h = info[m + 2u];
    img.reflect = (flags & 1u) != 0u;
    img.fill = vec3<f32>(prm[q + 11u], prm[q + 12u], prm[q + 13u]);
    let kx = (flags >> 8u) & 0xffu;
    let ky = (flags >> 16u) & 0xffu;
    let a0 = prm[q];
    let a1 = prm[q + 1u];
    let a2 = prm[q + 2u];
    let a3 = prm[q + 3u];
    let a4 = prm[q + 4u];
    let a5 = prm[q + 5u];

    let x = f32(pix % size) + 0.5;
    let y = f32(pix / size) + 0.5;
    var acc = vec3<f32>(0.0);
    for (var ty = 0u; ty < ky; ty = ty + 1u) {
        let oy = y + ((f32(ty) + 0.5) / f32(ky) - 0.5);
        for (var tx = 0u; tx < kx; tx = tx + 1u) {
            let ox = x + ((f32(tx) + 0.5) / f32(kx) - 0.5);
            let sx = a0 * ox + a1 * oy + a2;
            let sy = a3 * ox + a4 * oy + a5;
            acc = acc + tap(img, sx, sy);
        }
    }
    var v = acc / (255.0 * f32(kx * ky));

    // Colour jitter: brightness, contrast, saturation, hue.
    v = clamp01(v * prm[q + 6u]);
    let c = prm[q + 7u];
    v = clamp01(c * v + vec3<f32>((1.0 - c) * prm[q + 10u]));
    let s = prm[q + 8u];
    v = clamp01(s * v + vec3<f32>((1.0 - s) * gray(v)));
    let hue = prm[q + 9u];
    if (hue != 0.0) {
        var hsv = rgb2hsv(v);
        let hh = hsv.x + hue;
        hsv.x = hh - floor(hh);
        v = hsv2rgb(hsv);
    }
    return v;
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = wid.y;
    let size = info[1];
    let plane = size * size;
    let pix = wid.x * 256u + lid;
    if (n >= info[0] || pix >= plane) {
        return;
    }

    // MixUp / CutMix: blend with the partner's own augmentation of the same pixel.
    let q = PRM_HEADER + PRM_STRIDE * n;
    let px = f32(pix % size);
    let py = f32(pix / size);
    var w = prm[q + 14u];
    if (py >= prm[q + 16u] && py < prm[q + 17u] && px >= prm[q + 18u] && px < prm[q + 19u]) {
        w = 0.0;
    }
    var v: vec3<f32>;
    if (w >= 1.0) {
        v = augmented(n, pix, size);
    } else if (w <= 0.0) {
        v = augmented(u32(prm[q + 15u]), pix, size);
    } else {
        let a = augmented(n, pix, size);
        let b = augmented(u32(prm[q + 15u]), pix, size);
        v = w * a + (1.0 - w) * b;
    }

    let nmean = vec3<f32>(prm[0], prm[1], prm[2]);
    let nstd = vec3<f32>(prm[3], prm[4], prm[5]);
    let o = (v - nmean) / nstd;
    let base = n * 3u * plane + pix;
    out_buf[base] = {{elem}}(o.x);
    out_buf[base + plane] = {{elem}}(o.y);
    out_buf[base + 2u * plane] = {{elem}}(o.z);
}
