//! Jobs and where they are, kept in memory.
//!
//! A page loaded while its job runs renders the job's current progress from here; the
//! background task changes it here and broadcasts the change while holding the same
//! lock, so that a page shows every change either in its HTML or as a broadcast.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Serialize, Serializer};

/// Jobs remembered; the oldest finished ones are forgotten beyond this.
const MAX_KEPT: usize = 1000;
/// Jobs running at once; starting one more is refused.
pub const MAX_RUNNING: usize = 8;

/// A job's id: 64 random bits, written as 16 hex digits. Hard to guess, so a job's page
/// is found only by whoever started it (or got its link).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobId(u64);

impl JobId {
    fn random() -> Result<Self, getrandom::Error> {
        getrandom::u64().map(Self)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text is not 16 lowercase hex digits.
#[derive(Debug)]
pub struct NotAJobId;

impl FromStr for JobId {
    type Err = NotAJobId;

    fn from_str(text: &str) -> Result<Self, NotAJobId> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != 16 || !text.bytes().all(hex) {
            return Err(NotAJobId);
        }
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| NotAJobId)
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One job, as its page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// How far it is, 0 to 100.
    pub percent: u8,
    /// What it found, once it has finished.
    pub result: Option<String>,
}

impl Job {
    /// The stream its pages subscribe to: `job:{id}`.
    pub fn stream_name(&self) -> String {
        format!("job:{}", self.id)
    }

    /// The `id` of its progress element, which each step replaces.
    pub fn progress_id(&self) -> String {
        format!("job-{}-progress", self.id)
    }

    /// The `id` of its result element, which the end replaces.
    pub fn result_id(&self) -> String {
        format!("job-{}-result", self.id)
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.result.is_some()
    }
}

/// Why a job could not start.
#[derive(Debug)]
pub enum StartError {
    /// [`MAX_RUNNING`] jobs are running.
    Busy,
    /// The system's random number generator failed.
    Random(getrandom::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => write!(f, "{MAX_RUNNING} jobs are running: try again in a moment"),
            Self::Random(error) => write!(f, "cannot pick a job id: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Every job this process remembers. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Jobs {
    store: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    jobs: HashMap<JobId, Job>,
    /// Ids from the oldest to the newest job.
    started: VecDeque<JobId>,
}

impl Jobs {
    /// Records a new job at 0 %.
    ///
    /// # Errors
    ///
    /// [`StartError::Busy`] when [`MAX_RUNNING`] jobs are running.
    pub fn create(&self) -> Result<Job, StartError> {
        let mut store = self.lock();
        if store.jobs.values().filter(|job| !job.is_finished()).count() >= MAX_RUNNING {
            return Err(StartError::Busy);
        }
        let mut id = JobId::random().map_err(StartError::Random)?;
        while store.jobs.contains_key(&id) {
            id = JobId::random().map_err(StartError::Random)?;
        }
        let job = Job {
            id,
            percent: 0,
            result: None,
        };
        store.jobs.insert(id, job.clone());
        store.started.push_back(id);
        store.forget_old();
        Ok(job)
    }

    /// Runs `f` on job `id`, with changes held off until it returns; `None` when there is
    /// no such job.
    pub fn read<T>(&self, id: JobId, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.lock().jobs.get(&id).map(f)
    }

    /// Runs `f` to change job `id`, with readers held off until it returns; `None` when
    /// there is no such job.
    pub fn change<T>(&self, id: JobId, f: impl FnOnce(&mut Job) -> T) -> Option<T> {
        self.lock().jobs.get_mut(&id).map(f)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Every change is a plain assignment: the store is consistent whatever panicked.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store {
    /// Forgets the oldest finished jobs beyond [`MAX_KEPT`].
    fn forget_old(&mut self) {
        let mut excess = self.jobs.len().saturating_sub(MAX_KEPT);
        if excess == 0 {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.started.len());
        for id in self.started.drain(..) {
            let finished = self.jobs.get(&id).is_some_and(Job::is_finished);
            if excess > 0 && finished {
                self.jobs.remove(&id);
                excess -= 1;
            } else {
                kept.push_back(id);
            }
        }
        self.started = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_hex_digits_both_ways() {
        let id = JobId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<JobId>().ok(), Some(id));
        for bad in [
            "",
            "abc",
            "00ABCDEF01234567",
            "+0abcdef01234567",
            "00abcdef012345678",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_more_than_max_running_jobs_start() {
        let jobs = Jobs::default();
        for _ in 0..MAX_RUNNING {
            jobs.create().expect("room for it");
        }
        assert!(matches!(jobs.create(), Err(StartError::Busy)));
    }
}
