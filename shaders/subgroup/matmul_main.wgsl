var<workgroup> sums: array<vec4<f32>, WG * TM>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let r0 = row_block(wid, nwg);
    let m0 = wid.y * TM;
    let acc = partial_sums(r0, m0, t);
    let group = t / width;
    for (var i = 0u; i < TM; i++) {
        let s = subgroupAdd(acc[i]);
        if (lane == 0u) {
            sums[group * TM + i] = s;
        }
    }
    workgroupBarrier();
    if (t < TM * R) {
        let i = t / R;
        var v = 0.0;
        for (var g = 0u; g < (WG + width - 1u) / width; g++) {
            v += sums[g * TM + i][t % R];
        }
        store(r0, m0, i, t % R, v);
    }
}
