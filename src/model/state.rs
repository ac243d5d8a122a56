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
        assert_eq!(MessageState::parse("none"), None);
    }
}
