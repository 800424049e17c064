//! The long job and how it reports: it counts the primes below [`LIMIT`] in [`STEPS`]
//! steps, one step every `step`; after each step it replaces the progress element on
//! every open page of the job, and at the end it replaces the result element too:
//!
//! ```no_run
//! # use turbo_model::context;
//! # fn report(job: &jobs::job::Job) -> turbo_model::Result<()> {
//! turbo_model::stream(job.stream_name())?
//!     .replace("jobs/progress.html", context! { job })
//!     .target(job.progress_id())
//!     .send()?;
//! # Ok(()) }
//! ```

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;
use turbo_model::{Broadcast, Result, Turbo, context, stream};

use crate::job::{JobId, Jobs};

/// The job counts the primes below this number.
pub const LIMIT: u64 = 1_000_000;
/// Steps of a job; each one does a tenth of the counting and reports.
pub const STEPS: u32 = 10;
/// How long a step takes at least (the pace of the progress bar), by default.
pub const STEP: Duration = Duration::from_millis(100);

/// Runs job `id` in the background, one step every `step`, broadcasting through `turbo`.
pub(crate) fn spawn(jobs: Jobs, id: JobId, step: Duration, turbo: &Turbo) {
    tokio::spawn(turbo.scope(run(jobs, id, step)));
}

async fn run(jobs: Jobs, id: JobId, step: Duration) {
    let started = Instant::now();
    let mut primes = 0;
    for k in 1..=STEPS {
        let range =
            u64::from(k - 1) * LIMIT / u64::from(STEPS)..u64::from(k) * LIMIT / u64::from(STEPS);
        // The counting is CPU work: off the async worker threads.
        match tokio::task::spawn_blocking(move || count_primes(range)).await {
            Ok(found) => primes += found,
            Err(error) => {
                tracing::error!(job = %id, %error, "the job's computation failed");
                let percent = u8::try_from((k - 1) * 100 / STEPS).unwrap_or(100);
                report(&jobs, id, percent, Some(format!("Failed: {error}")));
                return;
            }
        }
        tokio::time::sleep_until(started + step * k).await;
        let percent = u8::try_from(k * 100 / STEPS).unwrap_or(100);
        let result = (k == STEPS).then(|| {
            format!(
                "Done: counted {} primes below {}",
                grouped(primes),
                grouped(LIMIT)
            )
        });
        report(&jobs, id, percent, result);
    }
    tracing::info!(job = %id, primes, "job finished");
}

/// Records the job's progress (and result) and broadcasts it, holding the job's lock
/// throughout so that no page renders in between (see [`crate::job`]).
fn report(jobs: &Jobs, id: JobId, percent: u8, result: Option<String>) {
    let known = jobs.change(id, |job| {
        job.percent = percent;
        send(stream(job.stream_name()).map(|stream| {
            stream
                .replace("jobs/progress.html", context! { job })
                .target(job.progress_id())
        }));
        if let Some(result) = result {
            job.result = Some(result);
            send(stream(job.stream_name()).map(|stream| {
                stream
                    .replace("jobs/result.html", context! { job })
                    .target(job.result_id())
            }));
        }
    });
    if known.is_none() {
        tracing::warn!(job = %id, "a running job was forgotten");
    }
}

fn send(broadcast: Result<Broadcast>) {
    if let Err(error) = broadcast.and_then(Broadcast::send) {
        tracing::error!(%error, "cannot broadcast the job's progress");
    }
}

/// How many primes `range` holds, by trial division: slow enough to be a job.
fn count_primes(range: Range<u64>) -> u64 {
    let mut count = 0;
    for n in range {
        if is_prime(n) {
            count += 1;
        }
    }
    count
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut divisor = 3;
    while divisor * divisor <= n {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}

/// `1000000` as `1,000,000`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_primes_in_ranges() {
        assert_eq!(count_primes(0..100), 25);
        assert_eq!(count_primes(0..2), 0);
        assert_eq!(count_primes(2..3), 1);
        let whole: u64 = (0..STEPS)
            .map(|k| {
                count_primes(
                    u64::from(k) * 10_000 / u64::from(STEPS)
                        ..u64::from(k + 1) * 10_000 / u64::from(STEPS),
                )
            })
            .sum();
        assert_eq!(whole, 1229, "the steps together cover the range once");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(78_498), "78,498");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }
}
