var<workgroup> sums: array<vec4<f32>, WG * TM>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r0 = row_block(wid, nwg);
    let m0 = wid.y * TM;
    let acc = partial_sums(r0, m0, t);
    for (var i = 0u; i < TM; i++) {
        sums[t * TM + i] = acc[i];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (t < s) {
            for (var i = 0u; i < TM; i++) {
                sums[t * TM + i] += sums[(t + s) * TM + i];
            }
        }
        workgroupBarrier();
    }
    if (t < TM * R) {
        store(r0, m0, t / R, t % R, sums[t / R][t % R]);
    }
}
