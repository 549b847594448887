{{header}}
// Shared by concat_pool_forward.wgsl and concat_pool_backward.wgsl (prepended by the Rust
// wrapper). One workgroup reduces one (n, c) plane of H·W values: the sum, and the max with
// its index. Max order: a NaN beats any number (NaN propagates, as in PyTorch), a larger value
// beats a smaller one, and on ties (NaNs included) the lower index wins (the first index, as
// PyTorch's max pooling reports).

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_max: array<f32, 256>;
var<workgroup> s_idx: array<u32, 256>;

// Index of this workgroup in the dispatch grid, which wraps onto rows of info[3] workgroups
// (every kernel declares `info` = [planes, H·W, C, workgroups per row]).
fn workgroup_index(wid: vec3<u32>) -> u32 {
    return wid.x + wid.y * info[3];
}

// NaN test on the bits: compilers may assume `v != v` is false.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether (bv, bi) replaces (av, ai) as the running max.
fn better(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
    if (bi == NONE) {
        return false;
    }
    if (ai == NONE) {
        return true;
    }
    let an = is_nan(av);
    let bn = is_nan(bv);
    if (an != bn) {
        return bn;
    }
    if (an || bv == av) {
        return bi < ai;
    }
    return bv > av;
}

struct PlaneStats {
    sum: f32,
    max: f32,
    arg: u32,
}

// Sum, max and argmax of the elements first, first + step, … < hw of the plane at `base`.
fn scan_plane(base: u32, first: u32, hw: u32, step: u32) -> PlaneStats {
    var s = PlaneStats(0.0, 0.0, NONE);
    for (var i = first; i < hw; i = i + step) {
        let v = f32(x_buf[base + i]);
        s.sum = s.sum + v;
        if (better(s.max, s.arg, v, i)) {
            s.max = v;
            s.arg = i;
        }
    }
    return s;
}

// Reduces plane `plane` (valid or not: every invocation must reach the barriers) starting at
// `base`; afterwards s_sum[0], s_max[0], s_idx[0] hold the plane's sum, max and argmax.
fn reduce_plane(valid: bool, base: u32, hw: u32, lid: u32) {
    var s = PlaneStats(0.0, 0.0, NONE);
    if (valid) {
        s = scan_plane(base, lid, hw, WG);
    }
    s_sum[lid] = s.sum;
    s_max[lid] = s.max;
    s_idx[lid] = s.arg;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            s_sum[lid] = s_sum[lid] + s_sum[lid + s];
            if (better(s_max[lid], s_idx[lid], s_max[lid + s], s_idx[lid + s])) {
                s_max[lid] = s_max[lid + s];
                s_idx[lid] = s_idx[lid + s];
            }
        }
        workgroupBarrier();
    }
}
