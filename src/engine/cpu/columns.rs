//! Matrix products split by output columns over the worker threads. Several products that read
//! the same activations (Q, K and V; gate and up) run as one parallel region, so a decode step
//! wakes the pool once for them, not once per product.

/// `f(j0, j1, out)`: output columns `j0..j1` into `out`, column-major (`m` values per column).
pub(super) type Columns<'a> = dyn Fn(usize, usize, &mut [f32]) + Sync + 'a;

/// A product whose activations are ready.
pub(super) struct Job<'a> {
    pub n: usize,
    /// The inner dimension, for the size of the work.
    pub k: usize,
    pub f: Box<Columns<'a>>,
}

/// Outside a crew, regions smaller than this many multiply-adds run on one thread: handing work to a sleeping
/// thread costs tens of microseconds (more in browsers, where it is an `Atomics.notify`), as much
/// as a 896 × 896 matvec takes alone. Measured in Chromium on SmolLM2-135M (576 wide): 2 threads
/// decoded at 32.5 tok/s and 1 at 38.9 while every product was split.
pub(super) const PARALLEL_MACS: usize = 1 << 20;

/// Regions at least this big go to the step's crew (crew.rs), whose threads are already awake:
/// handing out a task there costs an atomic claim.
pub(super) const CREW_MACS: usize = 1 << 16;

/// Output columns handed to one worker at a time: a few tasks per thread, so small matrices
/// (a decode step's 896×896) are not cut into pieces that cost more to hand out than to compute,
/// and big ones still balance. Whole interleaved groups (tiles.rs), which also keeps the decode
/// tiles full.
fn columns_per_task(n: usize) -> usize {
    let group = super::tiles::GROUP;
    n.div_ceil(threads() * 4)
        .next_multiple_of(group)
        .clamp(group, 256)
}

fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    1
}

/// Runs the jobs' column ranges over the worker threads, as one region; returns each product
/// row-major (`m` rows of its `n`).
pub(super) fn run(m: usize, jobs: &[Job]) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = jobs.iter().map(|j| vec![0f32; m * j.n]).collect();
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (p, (job, out)) in jobs.iter().zip(outs.iter_mut()).enumerate() {
        let per = columns_per_task(job.n);
        for (t, cols) in out.chunks_mut(per * m).enumerate() {
            tasks.push((p, t * per, cols));
        }
    }
    let task = |(p, j0, out): (usize, usize, &mut [f32])| {
        (jobs[p].f)(j0, j0 + out.len() / m, out);
    };
    let macs: usize = jobs.iter().map(|j| m * j.n * j.k).sum();
    let tasks = if macs >= CREW_MACS && tasks.len() > 1 {
        super::crew::for_each(tasks, task).err()
    } else {
        Some(tasks)
    };
    if let Some(tasks) = tasks {
        if threads() > 1 && macs >= PARALLEL_MACS {
            #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
            {
                use rayon::prelude::*;
                tasks.into_par_iter().for_each(task);
            }
        } else {
            tasks.into_iter().for_each(task);
        }
    }
    if m == 1 {
        return outs;
    }
    outs.into_iter()
        .zip(jobs)
        .map(|(cm, job)| {
            let n = job.n;
            let mut rm = vec![0f32; m * n];
            for j in 0..n {
                for i in 0..m {
                    rm[i * n + j] = cm[j * m + i];
                }
            }
            rm
        })
        .collect()
}
