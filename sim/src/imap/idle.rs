//! IDLE (RFC 2177): the client waits for updates until it sends DONE.
//!
//! While idling, the session waits on two things at once: the next input
//! line, which must be DONE, and the account's change notification. Each
//! change is reported at once as untagged EXPUNGE, EXISTS and RECENT
//! responses, so new mail from a delivery or another session reaches the
//! client without polling.

use imap_codec::IdleDoneCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::output::Disconnect;
use super::response::{self, Completion};
use super::session::{Session, State, wrong_state};
use crate::conn::{Line, ReadError};

/// Event that ended one wait of the IDLE loop.
enum Wake {
    Input(Result<Line, ReadError>),
    Changed,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// IDLE, in the authenticated or selected state.
    pub(super) async fn idle(&mut self, tag: &Tag<'static>) -> Result<Completion, Disconnect> {
        if self.login().is_none() {
            return Ok(wrong_state(&self.state));
        }
        tracing::debug!(tag = tag.inner(), "idling");
        self.out.send(&response::continuation("idling")).await?;
        self.report_changes(true).await?;
        self.out.flush().await?;

        let limits = self.service.limits();
        let (max_line, idle_timeout) = (limits.max_line, limits.imap_idle_timeout);
        let deadline = Instant::now() + idle_timeout;
        loop {
            let wake = {
                let changes = match &mut self.state {
                    State::Authenticated { login } | State::Selected { login, .. } => {
                        &mut login.changes
                    }
                    State::NotAuthenticated | State::Logout => return Ok(wrong_state(&self.state)),
                };
                let remaining = deadline.saturating_duration_since(Instant::now());
                let conn = self.out.conn();
                tokio::select! {
                    biased;
                    line = conn.read_line(max_line, remaining) => Wake::Input(line),
                    changed = changes.changed() => match changed {
                        Ok(()) => Wake::Changed,
                        // The account outlives the session, so its sender
                        // cannot be gone; wait for input alone if it is.
                        Err(_) => Wake::Input(conn.read_line(max_line, remaining).await),
                    },
                }
            };
            match wake {
                Wake::Changed => {
                    // The notification is consumed; look at the store now.
                    if let State::Authenticated { login } | State::Selected { login, .. } =
                        &mut self.state
                    {
                        login.changes.mark_changed();
                    }
                    self.report_changes(true).await?;
                    self.out.flush().await?;
                }
                Wake::Input(Ok(Line::Complete(line))) => {
                    let mut input = line.to_vec();
                    input.extend_from_slice(b"\r\n");
                    return Ok(match IdleDoneCodec::new().decode(&input) {
                        Ok(_) => Completion::ok("IDLE terminated"),
                        Err(_) => Completion::bad("Expected DONE"),
                    });
                }
                Wake::Input(Ok(Line::TooLong { .. })) => {
                    return Ok(Completion::bad("Expected DONE"));
                }
                Wake::Input(Err(ReadError::TimedOut)) => {
                    self.out
                        .send(&response::bye(None, "Autologout; idle for too long"))
                        .await?;
                    self.out.flush().await?;
                    return Err(Disconnect::Bye);
                }
                Wake::Input(Err(error)) => return Err(error.into()),
            }
        }
    }
}
