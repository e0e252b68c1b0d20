var<workgroup> sums: array<vec4<f32>, WG * TM>;
var<workgroup> sum_squares: array<f32, WG * TM>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r0 = row_block(wid, nwg, R);
    let m0 = wid.y * TM;
    let p = partial_sums(r0, m0, t);
    for (var i = 0u; i < TM; i++) {
        sums[t * TM + i] = p.sums[i];
        if (NORM) {
            sum_squares[t * TM + i] = p.squares[i];
        }
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (t < s) {
            for (var i = 0u; i < TM; i++) {
                sums[t * TM + i] += sums[(t + s) * TM + i];
                if (NORM) {
                    sum_squares[t * TM + i] += sum_squares[(t + s) * TM + i];
                }
            }
        }
        workgroupBarrier();
    }
    if (t < TM) {
        finish(r0, m0, t, sums[t], row_scale(sum_squares[t]));
    }
}
