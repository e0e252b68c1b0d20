//! Recording a step's dispatches, and where its time goes when profiling: dispatches and passes
//! recorded, CPU time to encode them, and GPU time per kernel class from timestamp queries
//! (written inside the one pass where the adapter allows it, else one pass per dispatch).

use super::device::Timestamps;
use super::kernels::{Op, Step};
use super::{Gpu, GpuError};

/// Totals over the profiled steps.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: u64,
    /// Dispatches recorded (those with no work are skipped, not counted).
    pub dispatches: u64,
    pub passes: u64,
    /// CPU time from creating the command encoder to finishing it.
    pub encode_ns: u64,
    /// CPU time of the queue's `submit` call.
    pub submit_ns: u64,
    /// Per kernel class, in the order first seen.
    pub classes: Vec<Class>,
    /// How GPU time was measured.
    pub timing: &'static str,
}

/// One kernel class's share of the profiled steps.
#[derive(Debug, Clone, Default)]
pub struct Class {
    pub name: &'static str,
    pub dispatches: u64,
    /// GPU time of its timed dispatches (0 without timestamp queries).
    pub gpu_ns: f64,
}

impl Report {
    /// Per step: `dispatches` and `passes`, `encodeMs` and `submitMs` on the CPU, and each
    /// class's dispatches and, where timed, GPU milliseconds.
    pub fn to_json(&self) -> String {
        let n = self.steps.max(1) as f64;
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|c| {
                format!(
                    "\"{}\":{{\"dispatches\":{:.2},\"gpuMs\":{:.4}}}",
                    c.name,
                    c.dispatches as f64 / n,
                    c.gpu_ns / n / 1e6
                )
            })
            .collect();
        format!(
            "{{\"dispatches\":{:.2},\"passes\":{:.2},\"encodeMs\":{:.4},\"submitMs\":{:.4},\"classes\":{{{}}},\"steps\":{}}}",
            self.dispatches as f64 / n,
            self.passes as f64 / n,
            self.encode_ns as f64 / n / 1e6,
            self.submit_ns as f64 / n / 1e6,
            classes.join(","),
            self.steps
        )
    }

    fn class(&mut self, name: &'static str) -> &mut Class {
        let i = match self.classes.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.classes.push(Class {
                    name,
                    ..Class::default()
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }

    /// Per step: dispatches, encode µs, submit µs.
    pub fn per_step(&self) -> (f64, f64, f64) {
        let n = self.steps.max(1) as f64;
        (
            self.dispatches as f64 / n,
            self.encode_ns as f64 / n / 1e3,
            self.submit_ns as f64 / n / 1e3,
        )
    }
}

/// Timestamp queries for one step: two per dispatch.
struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    capacity: u32,
    period_ns: f64,
}

/// Collects a [`Report`] while a backend runs with profiling on.
pub struct Profiler {
    mode: Timestamps,
    queries: Option<Queries>,
    /// The classes of the current step's timed dispatches, in query order.
    pending: Vec<&'static str>,
    pub report: Report,
}

impl Profiler {
    /// `most` is the most dispatches one step records.
    pub fn new(gpu: &Gpu, most: usize) -> Self {
        let mode = gpu.caps.timestamps;
        let capacity = (2 * most as u32).max(2);
        let queries = (mode != Timestamps::None).then(|| {
            let bytes = capacity as u64 * 8;
            let buffer = |usage, label| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            Queries {
                set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: capacity,
                }),
                resolve: buffer(
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    "profile resolve",
                ),
                staging: buffer(
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    "profile readback",
                ),
                capacity,
                period_ns: gpu.queue.get_timestamp_period() as f64,
            }
        });
        Self {
            mode,
            queries,
            pending: Vec::new(),
            report: Report {
                timing: match mode {
                    Timestamps::None => "none (the adapter has no timestamp queries)",
                    Timestamps::Passes => "timestamp queries, one pass per dispatch",
                    Timestamps::Inside => "timestamp queries inside the step's pass",
                },
                ..Report::default()
            },
        }
    }

    /// Reads the step's timestamps back (after its submission) and files them by class.
    pub async fn collect(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        let classes = std::mem::take(&mut self.pending);
        let Some(q) = &self.queries else {
            return Ok(());
        };
        if classes.is_empty() {
            return Ok(());
        }
        let bytes = gpu.read(&q.staging, classes.len() as u64 * 16).await?;
        let ticks: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        for (i, class) in classes.into_iter().enumerate() {
            let ns = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * q.period_ns;
            self.report.class(class).gpu_ns += ns;
        }
        Ok(())
    }
}

/// Records `ops` (each with its step) into `enc`: one compute pass, or with
/// `profile` timing by passes, one pass per dispatch. Returns the dispatches recorded.
pub fn record(
    enc: &mut wgpu::CommandEncoder,
    ops: &[(&Op, Step)],
    profile: Option<&mut Profiler>,
) -> u64 {
    let Some(p) = profile else {
        let mut pass = enc.begin_compute_pass(&Default::default());
        return ops
            .iter()
            .filter(|(op, step)| op.record(&mut pass, *step))
            .count() as u64;
    };
    let mut count = 0;
    match (&p.queries, p.mode) {
        (Some(q), Timestamps::Passes) => {
            for (op, step) in ops {
                let at = 2 * p.pending.len() as u32;
                let timed = at + 2 <= q.capacity;
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: timed.then_some(wgpu::ComputePassTimestampWrites {
                        query_set: &q.set,
                        beginning_of_pass_write_index: Some(at),
                        end_of_pass_write_index: Some(at + 1),
                    }),
                });
                if op.record(&mut pass, *step) {
                    count += 1;
                    p.report.class(op.class).dispatches += 1;
                }
                if timed {
                    p.pending.push(op.class);
                }
                p.report.passes += 1;
            }
        }
        (Some(q), Timestamps::Inside) => {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for (op, step) in ops {
                let at = 2 * p.pending.len() as u32;
                let timed = at + 2 <= q.capacity;
                if timed {
                    pass.write_timestamp(&q.set, at);
                }
                if op.record(&mut pass, *step) {
                    count += 1;
                    p.report.class(op.class).dispatches += 1;
                }
                if timed {
                    pass.write_timestamp(&q.set, at + 1);
                    p.pending.push(op.class);
                }
            }
            p.report.passes += 1;
        }
        _ => {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for (op, step) in ops {
                if op.record(&mut pass, *step) {
                    count += 1;
                    p.report.class(op.class).dispatches += 1;
                }
            }
            p.report.passes += 1;
        }
    }
    p.report.dispatches += count;
    count
}

/// After the step's last pass: the timestamps resolved and copied where `collect` reads them.
pub fn resolve(enc: &mut wgpu::CommandEncoder, profile: Option<&Profiler>) {
    let Some(p) = profile else { return };
    let (Some(q), n) = (&p.queries, p.pending.len() as u32 * 2) else {
        return;
    };
    if n > 0 {
        enc.resolve_query_set(&q.set, 0..n, &q.resolve, 0);
        enc.copy_buffer_to_buffer(&q.resolve, 0, &q.staging, 0, n as u64 * 8);
    }
}
