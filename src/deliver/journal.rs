//! The journal of a keyless effect's steps, kept in the store: what lets a destination
//! with no idempotency key run each request once across restarts and instances.

use crate::error::{GatewayError, Result, Stage};
use crate::model::Flow;

/// The steps of one (flow, message, destination) effect, kept in the store so a
/// restart or another instance knows what already happened.
#[derive(Clone, Copy)]
pub struct Journal<'a> {
    pub store: &'a crate::store::Store,
    pub flow: Flow,
    pub message_id: &'a str,
    pub destination: &'a str,
}

/// A journalled step as the store has it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    NotStarted,
    /// Started and not recorded done: the request may or may not have had its effect.
    Started(Option<String>),
    Done(String),
}

impl Journal<'_> {
    pub async fn step(&self, step: &str) -> Result<Step> {
        Ok(
            match self
                .store
                .effect(self.flow.as_str(), self.message_id, self.destination, step)
                .await?
            {
                None => Step::NotStarted,
                Some((state, value)) if state == "done" => Step::Done(value.unwrap_or_default()),
                // A definite refusal made nothing: the step may run again.
                Some((state, _)) if state == "refused" => Step::NotStarted,
                Some((_, value)) => Step::Started(value),
            },
        )
    }

    /// Records, durably, that a step is about to happen.
    pub async fn start(&self, step: &str, value: Option<&str>) -> Result<()> {
        self.store.write(self.record(step, "started", value)).await
    }

    /// Records, durably, what a step produced.
    pub async fn done(&self, step: &str, value: &str) -> Result<()> {
        self.store
            .write(self.record(step, "done", Some(value)))
            .await
    }

    /// Runs a keyless request once: a step already done answers with what it made; a
    /// step started and never finished is an unknown outcome (an error with `sent`
    /// set, which the engine parks for a person); otherwise the step is journalled
    /// around `request`. A definite refusal (nothing made) leaves it free to run again.
    pub async fn once<F>(&self, step: &str, what: &str, request: F) -> Result<String>
    where
        F: std::future::Future<Output = Result<String>>,
    {
        match self.step(step).await? {
            Step::Done(made) => return Ok(made),
            Step::Started(_) => {
                let mut e = GatewayError::permanent(
                    Stage::Deliver,
                    format!(
                        "{}: {what} was sent earlier but its answer was never recorded",
                        self.destination
                    ),
                );
                e.sent = true;
                return Err(e);
            }
            Step::NotStarted => {}
        }
        self.start(step, None).await?;
        match request.await {
            Ok(made) => {
                self.done(step, &made).await?;
                Ok(made)
            }
            Err(e) if e.sent => Err(e),
            Err(e) => {
                self.store.write(self.record(step, "refused", None)).await?;
                Err(e)
            }
        }
    }

    pub fn record(&self, step: &str, state: &str, value: Option<&str>) -> crate::store::Write {
        crate::store::Write::Effect(crate::store::writer_types::EffectRecord {
            flow: self.flow.as_str().into(),
            message_id: self.message_id.into(),
            destination: self.destination.into(),
            step: step.into(),
            state: state.into(),
            value: value.map(str::to_string),
        })
    }
}

/// The files one destination appends to (a CSV sheet per day or batch), as the store
/// keeps them: how far each is written and synced, so a restart continues where the last
/// committed row ends.
#[derive(Clone, Copy)]
pub struct Appends<'a> {
    pub store: &'a crate::store::Store,
    pub destination: &'a str,
}

impl Appends<'_> {
    /// A file's committed (bytes, rows), if the store knows it.
    pub async fn file(&self, file: &str) -> Result<Option<(i64, i64)>> {
        self.store.appended_file(self.destination, file).await
    }

    /// The newest file: (file, rows).
    pub async fn latest(&self) -> Result<Option<(String, i64)>> {
        self.store.latest_appended_file(self.destination).await
    }

    /// The store write that records how far `file` is committed.
    pub fn record(&self, file: &str, committed_bytes: i64, rows: i64) -> crate::store::Write {
        crate::store::Write::Appended {
            destination: self.destination.to_string(),
            file: file.to_string(),
            committed_bytes,
            rows,
        }
    }

    /// Forgets a file retention removed.
    pub async fn forget(&self, file: &str) -> Result<()> {
        self.store
            .forget_appended_file(self.destination, file)
            .await
    }
}
