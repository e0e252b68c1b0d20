// A weight matrix part as the matmul and embedding kernels see it.
struct Dims {
    // Values per row (n_in), rows in this part (all slots of a fused matrix), the output column
    // of the part's first row, output row stride, activation rows when fixed (0: the step's
    // count), whether the product is added to the output (a residual) rather than written, the
    // RMSNorm epsilon of a normalized input, and whether the input is the step's last row only.
    k: u32,
    rows: u32,
    row0: u32,
    n: u32,
    m: u32,
    accumulate: u32,
    eps: f32,
    last: u32,
}
