var<workgroup> sums: array<vec4<f32>, WG * TM>;
var<workgroup> sum_squares: array<f32, WG * TM>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let r0 = row_block(wid, nwg, R);
    let m0 = wid.y * TM;
    let p = partial_sums(r0, m0, t);
    let group = t / width;
    for (var i = 0u; i < TM; i++) {
        let s = subgroupAdd(p.sums[i]);
        let q = subgroupAdd(p.squares[i]);
        if (lane == 0u) {
            sums[group * TM + i] = s;
            sum_squares[group * TM + i] = q;
        }
    }
    workgroupBarrier();
    if (t < TM) {
        var v = vec4<f32>();
        var q = 0.0;
        for (var g = 0u; g < (WG + width - 1u) / width; g++) {
            v += sums[g * TM + t];
            q += sum_squares[g * TM + t];
        }
        finish(r0, m0, t, v, row_scale(q));
    }
}
