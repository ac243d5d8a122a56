//! The states the store keeps and the actions the audit log records, typed: the
//! strings exist only at the store boundary (`as_str` / `parse`).

macro_rules! text_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Where a message stands as a whole.
    pub enum MessageState {
        /// Taken from a source; no outcome recorded yet.
        Received = "received",
        /// Every destination has it.
        Delivered = "delivered",
        /// Waiting in a retry tier.
        Retrying = "retrying",
        /// Failed for good, or needs a person: in the parking queue / failed folder.
        Parked = "parked",
        /// Policy kept it back (consent declined); nothing was sent.
        Withheld = "withheld",
    }
}

text_enum! {
    /// Where one (flow, message, destination) effect stands.
    pub enum DeliveryState {
        /// Claimed for a first attempt that has not finished.
        Pending = "pending",
        /// The destination has it. Never downgraded.
        Delivered = "delivered",
        /// Failed transiently; the next attempt may send again.
        Retrying = "retrying",
        /// Failed for good (the destination refused it, or it could not be made).
        Failed = "failed",
        /// Sent, but no usable answer came back: a person must check before any resend.
        Unknown = "unknown",
    }
}

text_enum! {
    /// What the audit log says happened.
    pub enum AuditAction {
        Delivered = "delivered",
        Retry = "retry",
        Parked = "parked",
        Duplicate = "duplicate",
        Withheld = "withheld",
        Replayed = "replayed",
        Resolved = "resolved",
        Purged = "purged",
        /// A parked message closed by a person without replay.
        Dismissed = "dismissed",
        /// The destination reported that what it accepted did not reach its recipient.
        Undelivered = "undelivered",
        /// How a referral's consent was read, when it was not as recorded.
        Consent = "consent",
        /// Characters a record format forbids were left out of the message's text.
        Sanitised = "sanitised",
        /// Codes the gateway added beside those sent (Read v2 reasons coded in SNOMED CT).
        Coded = "coded",
        /// Mandatory PRSB items the referral did not carry (field names only).
        Incomplete = "incomplete",
        /// Sensitive sections (risks, safeguarding, gender history) left out for a
        /// destination whose agreement does not name them.
        Filtered = "filtered",
        /// A dataset extract or report was made (who, which programme, how many rows).
        Extracted = "extracted",
        /// The information-governance pack was generated (who, from which configuration).
        IgPack = "ig-pack",
        /// The recipient acknowledged a message (ITK3 response): received, filed or
        /// rejected, with its code and meaning.
        Acknowledged = "acknowledged",
        /// An acknowledgement did not come within its configured time: a person was told.
        AckOverdue = "ack-overdue",
        /// A destination's inbox held something the gateway did not understand, or that
        /// named nothing it sent: kept whole in the store for a person.
        Kept = "kept",
        /// A referral's life moved on: a version (amend, cancel, consent withdrawn) was
        /// taken, or the gateway reminded or closed an unanswered referral. Field names
        /// only, never values.
        Lifecycle = "lifecycle",
    }
}

text_enum! {
    /// What one message about a referral is to it (ARCHITECTURE.md "A referral's life"):
    /// versions come from the practice (tied by the ServiceRequest's identifier),
    /// reminders and closes from the gateway's own clock.
    pub enum Change {
        /// The first message about a ServiceRequest: the referral itself.
        New = "new",
        /// A later version with fields changed: sent as an update where a kind takes one.
        Amend = "amend",
        /// A later version whose ServiceRequest is `revoked` or `entered-in-error`.
        Cancel = "cancel",
        /// A later version whose Consent now denies (or is inactive / rejected).
        Withdraw = "withdraw",
        /// A later version that changes nothing: recorded, nothing sent.
        Unchanged = "unchanged",
        /// The programme has not answered within `respond_within`: it is nudged.
        Remind = "remind",
        /// Still no answer by `close_after`: closed as "the service did not respond".
        Close = "close",
    }
}

text_enum! {
    /// Where a referral stands as the practice and the gateway decide it; the platform's
    /// own progress (accepted, in progress, closed) is derived from its events.
    pub enum Lifecycle {
        /// Live: the programme's events move it on.
        Open = "open",
        /// The practice cancelled it.
        Cancelled = "cancelled",
        /// The patient withdrew consent: nothing more is shared with the programme.
        Withdrawn = "withdrawn",
        /// Closed by the gateway: the service did not respond in time.
        Expired = "expired",
    }
}

impl Change {
    /// Whether the message carries the referral's content (else only a notice that names it).
    pub fn carries_referral(self) -> bool {
        matches!(self, Change::New | Change::Amend)
    }

    /// The lifecycle state it ends the referral in, when it ends one.
    pub fn ends_in(self) -> Option<Lifecycle> {
        match self {
            Change::Cancel => Some(Lifecycle::Cancelled),
            Change::Withdraw => Some(Lifecycle::Withdrawn),
            Change::Close => Some(Lifecycle::Expired),
            _ => None,
        }
    }

    /// How a receiver is told what this is (webhook `lifecycle.event`, CSV action column).
    pub fn event_name(self) -> &'static str {
        match self {
            Change::New => "referral",
            Change::Amend => "updated",
            Change::Cancel => "cancelled",
            Change::Withdraw => "consent-withdrawn",
            Change::Unchanged => "unchanged",
            Change::Remind => "reminder",
            Change::Close => "closed-not-responded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in MessageState::ALL {
            assert_eq!(MessageState::parse(s.as_str()), Some(*s));
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(*s));
        }
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        for c in Change::ALL {
            assert_eq!(Change::parse(c.as_str()), Some(*c));
        }
        for l in Lifecycle::ALL {
            assert_eq!(Lifecycle::parse(l.as_str()), Some(*l));
        }
        assert_eq!(MessageState::parse("none"), None);
    }
}
