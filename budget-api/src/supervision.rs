//! Background tasks under supervision: each is spawned under a name, its state is visible in
//! `/api/health`, and [`Tasks::first_to_end`] tells the service when one panics or returns, so that the
//! process stops and an orchestrator restarts it whole instead of a "healthy" process that no longer
//! projects, sweeps or writes. There is no restart in-process: a task that died left its state unknown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use utoipa::ToSchema;

/// A background task's state, as health shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    /// Ended because the service is stopping.
    Stopped,
    /// Panicked or returned while the service was running; the process is stopping.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskHealth {
    pub name: String,
    pub state: TaskState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A task's state and, once it failed, why.
type Entry = (TaskState, Option<String>);

/// The states of the service's tasks, shared with the health route.
#[derive(Debug, Clone, Default)]
pub struct TaskStates(Arc<Mutex<BTreeMap<&'static str, Entry>>>);

impl TaskStates {
    fn set(&self, name: &'static str, state: TaskState, reason: Option<String>) {
        self.0.lock().expect("the task states lock is never poisoned").insert(name, (state, reason));
    }

    pub fn snapshot(&self) -> Vec<TaskHealth> {
        let states = self.0.lock().expect("the task states lock is never poisoned");
        states
            .iter()
            .map(|(name, (state, reason))| TaskHealth { name: name.to_string(), state: *state, reason: reason.clone() })
            .collect()
    }
}

/// The service's background tasks.
pub struct Tasks {
    watched: JoinSet<(&'static str, Result<(), tokio::task::JoinError>)>,
    states: TaskStates,
    /// Tests only (`BUDGET_FAULT`): the task that panics right after start.
    fault: Option<String>,
    /// Tasks that end only when the last handle to them is dropped (the writer): not waited for on a
    /// stop, since everything they acknowledged is committed already.
    detached: Vec<AbortHandle>,
}

impl Tasks {
    pub fn new(fault: Option<String>) -> Self {
        Tasks { watched: JoinSet::new(), states: TaskStates::default(), fault, detached: Vec::new() }
    }

    pub fn states(&self) -> TaskStates {
        self.states.clone()
    }

    /// Spawns `task` under `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let faulty = self.fault.as_deref() == Some(name);
        self.adopt(
            name,
            tokio::spawn(async move {
                if faulty {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    panic!("BUDGET_FAULT={name}: this task panics on purpose (tests only)");
                }
                task.await
            }),
        );
    }

    /// Watches a task spawned elsewhere.
    pub fn adopt(&mut self, name: &'static str, handle: JoinHandle<()>) -> AbortHandle {
        self.states.set(name, TaskState::Running, None);
        self.watched.spawn(async move { (name, handle.await) })
    }

    /// Like [`Tasks::adopt`], for a task that runs until its last handle is dropped.
    pub fn adopt_detached(&mut self, name: &'static str, handle: JoinHandle<()>) {
        let watcher = self.adopt(name, handle);
        self.detached.push(watcher);
    }

    /// Waits for the first task to end and says which and why. Pending for ever if none ends.
    pub async fn first_to_end(&mut self) -> (&'static str, String) {
        loop {
            match self.watched.join_next().await {
                Some(Ok((name, ended))) => {
                    let reason = match ended {
                        Ok(()) => "returned while the service was running".to_string(),
                        Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
                        Err(e) => format!("was cancelled: {e}"),
                    };
                    self.states.set(name, TaskState::Failed, Some(reason.clone()));
                    return (name, reason);
                }
                Some(Err(_)) => continue, // a watcher aborted by `stopped`
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Waits for every task but the detached ones, once they have been told to stop.
    pub async fn stopped(mut self) {
        for w in &self.detached {
            w.abort();
        }
        while let Some(done) = self.watched.join_next().await {
            if let Ok((name, _)) = done {
                self.states.set(name, TaskState::Stopped, None);
            }
        }
    }
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast::<&str>().map_or_else(|_| "(no message)".into(), |s| s.to_string()),
    }
}
