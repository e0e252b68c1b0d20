// Decode's matrix × vector for the formats read 16 bytes at a time (`block_dot` and the
// bindings from `matvec_<format>.wgsl`): a workgroup takes RD weight rows with LANES threads
// to each, and a thread takes whole 32-value blocks of its row, so it loads each quant word
// once, in 16-byte reads, and each block's activations once for all of them. The lanes of a
// row sum in shared memory; rows are finished R at a time by the output's `finish`.

var<workgroup> partial: array<f32, WG>;
var<workgroup> partial_squares: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r0 = row_block(wid, nwg, RD);
    let lane = t % LANES;
    let r = t / LANES;
    let row = weight_row(r0 + r / R * R, r % R);
    let x0 = first_row() * (dims.k / 4u);
    let blocks = dims.k / 32u;
    let first_block = slot_row(row) * blocks;
    var s = 0.0;
    var sq = 0.0;
    for (var j = lane; j < blocks; j += LANES) {
        var a: array<vec4<f32>, 8>;
        for (var c = 0u; c < 8u; c++) {
            a[c] = activation4(x0 + j * 8u + c, input_weight4(j * 8u + c));
            sq += square4(x0 + j * 8u + c);
        }
        s += block_dot(first_block + j, a);
    }
    partial[t] = s;
    partial_squares[t] = sq;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h /= 2u) {
        if (lane < h) {
            partial[t] += partial[t + h];
            partial_squares[t] += partial_squares[t + h];
        }
        workgroupBarrier();
    }
    if (t < RD / R) {
        let g = t * R * LANES;
        let v = vec4<f32>(partial[g], partial[g + LANES], partial[g + 2u * LANES], partial[g + 3u * LANES]);
        finish(r0 + t * R, 0u, 0u, v, row_scale(partial_squares[g]));
    }
}
