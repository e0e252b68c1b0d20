// A weight matrix part as the matmul and embedding kernels see it.
struct Dims {
    // Values per row (n_in), rows in this part, index of the part's first row among all rows,
    // output row stride (n_out), activation rows when fixed (0: the step's count), and whether
    // the product is added to the output (a residual) rather than written.
    k: u32,
    rows: u32,
    row0: u32,
    n: u32,
    m: u32,
    accumulate: u32,
}
