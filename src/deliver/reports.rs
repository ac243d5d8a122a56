//! What a destination's own inbox says back about what the gateway sent it (MESH's):
//! non-delivery reports, the recipient's acknowledgements, and anything else, each read
//! and classified by the destination kind, then matched, recorded and taken by
//! `sources::reports` — so nothing the gateway is owed expires unread.

use futures_util::future::BoxFuture;

use crate::error::Result;

/// A destination's inbox, read on a schedule.
pub trait Reports: Send + Sync {
    fn every(&self) -> std::time::Duration;

    /// Everything waiting to be taken, classified.
    fn waiting(&self) -> BoxFuture<'_, Result<Vec<Report>>>;

    /// Marks one taken (acknowledged to the inbox): it is not listed again.
    fn taken<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<()>>;

    /// The most one listing returns, if the inbox pages: a full page is read again at
    /// once rather than after `every`.
    fn full_page(&self) -> Option<usize> {
        None
    }

    /// How long after a send its acknowledgement of `level` may take before a person is
    /// told; None: the destination asks for none.
    fn ack_within(&self, level: AckLevel) -> Option<std::time::Duration> {
        let _ = level;
        None
    }

    /// The journal step a send is recorded under (done with the id it got): what an
    /// acknowledgement is awaited after. None: the destination's sends are not acknowledged.
    fn sent_step(&self) -> Option<&'static str> {
        None
    }
}

/// One message in the inbox, as it came (kept whole for a person when it is not
/// understood or names nothing the gateway sent) and as classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The inbox's own id for it.
    pub id: String,
    pub kind: ReportKind,
    /// The inbox's headers for it (MESH's `mex-…`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReportKind {
    /// What the destination accepted did not reach its recipient: `about` is the id the
    /// send got; the code and description are the destination's own (never patient data).
    NonDelivery {
        about: Option<String>,
        code: String,
        description: String,
    },
    /// The recipient's answer to a message the gateway sent.
    Acknowledgement(Ack),
    /// Anything the gateway does not understand: kept whole (headers and body) for a
    /// person before it is taken, so it cannot expire unseen.
    Unrecognised {
        /// The inbox's own classification (MESH's workflow id), if any.
        workflow: Option<String>,
    },
}

/// An acknowledgement (an ITK3 response): which message it answers and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The identifier our message carried that it answers (the ITK3 MessageHeader id, or
    /// the Bundle's tracking id).
    pub about: String,
    pub level: AckLevel,
    /// The response code (ITK3: 20013, 30001, …) and its meaning.
    pub code: String,
    pub display: String,
    pub outcome: AckOutcome,
}

/// Which acknowledgement: the recipient's system took the message (infrastructure), or
/// the practice acted on it (business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckLevel {
    Infrastructure,
    Business,
}

impl AckLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AckLevel::Infrastructure => "infrastructure",
            AckLevel::Business => "business",
        }
    }

    /// The journal step an acknowledgement of this level is recorded under.
    pub fn step(self) -> &'static str {
        match self {
            AckLevel::Infrastructure => "ack-infrastructure",
            AckLevel::Business => "ack-business",
        }
    }

    /// The journal step that says a person was told it is overdue (once).
    pub fn overdue_step(self) -> &'static str {
        match self {
            AckLevel::Infrastructure => "ack-infrastructure-overdue",
            AckLevel::Business => "ack-business-overdue",
        }
    }
}

/// What an acknowledgement means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckOutcome {
    /// The recipient's system received it (a positive infrastructure acknowledgement).
    Received,
    /// The practice filed it (a positive business acknowledgement, or "already
    /// processed": a duplicate of what it has).
    Filed,
    /// Refused: it will not be filed as sent.
    Rejected,
}

impl AckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AckOutcome::Received => "received",
            AckOutcome::Filed => "filed",
            AckOutcome::Rejected => "rejected",
        }
    }
}
