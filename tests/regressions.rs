//! Scenarios that the properties in `properties.rs` found failing, kept as
//! named tests. Each runs an inline scenario file, which `mailsim run`
//! also accepts, and makes the assertion that failed.

#[allow(dead_code)]
#[path = "properties/checks.rs"]
mod checks;

/// A POP3 queue mailbox with a command budget of 20 commands per 10
/// minutes receives 30 messages at once. The retry interval is 10 minutes,
/// so every retry starts with a full bucket.
const POP3_THROTTLED_QUEUE: &str = r#"
name = "pop3-throttled-queue"
duration = "10m"
drain = "6h"

[server]
protocol = "pop3"
command_budget = "20/10m"

[cluster]
batch_size = 5
retry_interval = "10m"
max_retries = 1000

[[queues]]
name = "support"
count = 1
address = "support@northwind.example"

[[traffic]]
to = "support"
bursts = [{ at = "0m", count = 30, over = "1m" }]
"#;

// The first cycle is throttled after committing some messages but before
// its DELEs and QUIT. Every later cycle sends DELE for the processed
// messages still in the maildrop before it downloads anything. The engine
// used to drop the connection without QUIT when a DELE was throttled, so
// the service applied none of the DELEs. Once the processed messages and
// the commands before them exceeded the bucket, no cycle downloaded new
// mail again, and 13 of the 30 messages were never recorded. A cycle that
// fails on an answered error now ends with QUIT, which the service exempts
// from the budget, and the accepted DELEs apply.
#[test]
fn pop3_throttled_deletes_apply_at_quit() {
    let run = checks::run(POP3_THROTTLED_QUEUE).unwrap_or_else(|problem| panic!("{problem}"));
    if let Err(problem) = checks::no_loss_no_duplicate(&run) {
        panic!("{problem}\nscenario:\n{POP3_THROTTLED_QUEUE}");
    }
}

/// The same mail and budget on a user mailbox polled directly, which keeps
/// its mail and so sends no DELE, is recorded in full too.
#[test]
fn pop3_throttled_user_mailbox_loses_nothing() {
    let scenario = POP3_THROTTLED_QUEUE
        .replace("[[queues]]", "[[users]]")
        .replace(
            "drain = \"6h\"\n",
            "drain = \"6h\"\nstrategies = [\"individual\"]\n",
        );
    let run = checks::run(&scenario).unwrap_or_else(|problem| panic!("{problem}"));
    if let Err(problem) = checks::no_loss_no_duplicate(&run) {
        panic!("{problem}\nscenario:\n{scenario}");
    }
}
