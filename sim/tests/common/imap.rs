//! IMAP helpers: where a reply ends, the test organisation and a script
//! runner that plays one conversation in every chunk size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::imap_types::response::{Response, Status};
use imap_codec::{GreetingCodec, ResponseCodec};
use sim::conn::Peer;
use sim::store::{Account, Flags, SystemFlags};
use sim::{AccountSpec, Service};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

use super::{CHUNK_SIZES, Client, TestResult};

/// Starts `sim::imap::serve` on a task.
pub fn serve(
    service: Service,
    stream: DuplexStream,
    peer: Peer,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(sim::imap::serve(service, stream, peer))
}

/// Connects an IMAP client sending in chunks of `chunk` bytes.
pub fn connect(service: &Service, chunk: usize) -> Client {
    Client::connect(service, serve, chunk)
}

/// Measures the greeting at the start of `bytes`, once it is complete.
pub fn greeting(bytes: &[u8]) -> TestResult<Option<usize>> {
    match GreetingCodec::new().decode(bytes) {
        Ok((rest, _)) => Ok(Some(bytes.len() - rest.len())),
        Err(GreetingDecodeError::Incomplete) => Ok(None),
        Err(GreetingDecodeError::Failed) => {
            Err(format!("invalid greeting: {}", super::escape(bytes)).into())
        }
    }
}

/// Condition a step waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// The tagged reply to `tag`, or a continuation request.
    Tagged(&'static str),
    /// This many responses of any kind.
    Responses(usize),
}

/// Measures the responses at the start of `bytes` up to and including the
/// one `until` waits for, once they are complete. Every response must
/// decode with imap-codec, so the test also checks the reply grammar.
pub fn replies(bytes: &[u8], until: Until) -> TestResult<Option<usize>> {
    let wanted = match until {
        Until::Tagged(tag) => return replies_to(bytes, tag),
        Until::Responses(wanted) => wanted,
    };
    let mut offset = 0;
    for _ in 0..wanted {
        let rest = &bytes[offset..];
        match ResponseCodec::new().decode(rest) {
            Ok((remaining, _)) => offset = bytes.len() - remaining.len(),
            Err(ResponseDecodeError::Incomplete | ResponseDecodeError::LiteralFound { .. }) => {
                return Ok(None);
            }
            Err(ResponseDecodeError::Failed) => {
                return Err(format!("invalid response: {}", super::escape(rest)).into());
            }
        }
    }
    Ok(Some(offset))
}

/// One step of a scripted conversation.
pub enum Step {
    /// A command line (CRLF is added); waits for its tagged reply or a
    /// continuation request. The tag is the line's first word.
    Command(&'static str),
    /// Bytes sent as they are, then a wait.
    Raw(&'static [u8], Until),
    /// Bytes sent as they are, without waiting for a reply.
    Send(&'static [u8]),
    /// A change made to the service between two steps.
    Act(fn(&Service)),
    /// Waits for responses without sending anything.
    Wait(Until),
    /// Waits for the server to close the connection.
    Closed,
}

/// Plays `steps` on a fresh service from `world` once per chunk size,
/// checks that every chunking gives the same transcript, and returns it.
pub async fn play(world: fn() -> Service, steps: &[Step]) -> TestResult<String> {
    let mut reference: Option<String> = None;
    for chunk in CHUNK_SIZES.iter().rev() {
        let transcript = play_once(world(), steps, *chunk).await?;
        match &reference {
            None => reference = Some(transcript),
            Some(expected) => {
                if &transcript != expected {
                    return Err(format!(
                        "chunk size {chunk} changed the transcript:\n{transcript}\nexpected:\n{expected}"
                    )
                    .into());
                }
            }
        }
    }
    reference.ok_or_else(|| "no chunk sizes".into())
}

/// Plays `steps` once with chunks of `chunk` bytes.
pub async fn play_once(service: Service, steps: &[Step], chunk: usize) -> TestResult<String> {
    let mut client = connect(&service, chunk);
    client.receive(greeting).await?;
    for step in steps {
        match step {
            Step::Command(line) => {
                let tag = line.split(' ').next().unwrap_or_default();
                let tag: &'static str = tag;
                client.send(format!("{line}\r\n").as_bytes()).await?;
                client
                    .receive(|bytes| replies(bytes, Until::Tagged(tag)))
                    .await?;
            }
            Step::Raw(bytes, until) => {
                client.send(bytes).await?;
                let until = *until;
                client.receive(|received| replies(received, until)).await?;
            }
            Step::Send(bytes) => client.send(bytes).await?,
            Step::Act(action) => action(&service),
            Step::Wait(until) => {
                let until = *until;
                client.receive(|received| replies(received, until)).await?;
            }
            Step::Closed => {
                client.receive_to_end().await?;
            }
        }
    }
    client.finish().await
}

/// The address and password of the main test account.
pub const ALICE: (&str, &str) = ("alice@example.org", "alice-pw");
/// A second account with an empty INBOX.
pub const BOB: (&str, &str) = ("bob@example.org", "bob-pw");

/// A plain text message with encoded words and several recipients.
pub const PLAIN: &[u8] = include_bytes!("messages/plain.eml");
/// A multipart/mixed message with an alternative part and an attachment.
pub const MULTIPART: &[u8] = include_bytes!("messages/multipart.eml");
/// A copy forwarded as an attachment: the original as `message/rfc822`.
pub const FORWARDED: &[u8] = include_bytes!("messages/forwarded.eml");
/// A message delivered during tests.
pub const LATE: &[u8] = include_bytes!("messages/late.eml");

/// Builds the test organisation: alice with three messages in INBOX (the second
/// `\Seen`, the third `\Flagged`, with internal dates a day apart from
/// the epoch on) and two more folders, and bob with an empty INBOX.
pub fn world() -> Service {
    let service = super::service();
    populate(&service);
    service
}

/// Adds the test accounts and messages to `service`.
pub fn populate(service: &Service) {
    let mut alice = AccountSpec::new(ALICE.0, ALICE.1);
    alice.folders = vec!["Archive".to_owned(), "Projects/Mailsim".to_owned()];
    let alice = service.add_account(alice).expect("alice is new");
    service
        .add_account(AccountSpec::new(BOB.0, BOB.1))
        .expect("bob is new");

    let dates = [0, 1, 2].map(|days| Duration::from_secs(days * 24 * 3600));
    let messages = [PLAIN, MULTIPART, FORWARDED];
    let flags = [
        Flags::default(),
        Flags::with_system(SystemFlags::SEEN),
        Flags::with_system(SystemFlags::FLAGGED),
    ];
    for ((raw, offset), flags) in messages.into_iter().zip(dates).zip(flags) {
        insert_at(service, &alice, raw, offset, flags);
    }
}

/// Stores `raw` in INBOX with an internal date `offset` after the epoch.
pub fn insert_at(
    service: &Service,
    account: &Arc<Account>,
    raw: &'static [u8],
    offset: Duration,
    flags: Flags,
) {
    let date = service.clock().date_at(offset).fixed_offset();
    let message = Arc::new(sim::store::StoredMessage {
        raw: Bytes::from_static(raw),
        internal_date: date,
        tag: None,
    });
    account.modify(|mailboxes| mailboxes.inbox_mut().append(message, flags));
}

/// Delivers [`LATE`] to alice, as SMTP would.
pub fn deliver_late(service: &Service) {
    service
        .deliver(ALICE.0, Bytes::from_static(LATE), None)
        .expect("alice exists");
}

/// Runs a conversation once per chunk size and returns its transcript;
/// for use in `#[tokio::test(start_paused = true)]` tests.
pub async fn transcript(steps: &[Step]) -> TestResult<String> {
    play(world, steps).await
}

/// Sends the command `line` (CRLF is added) and returns everything up to
/// and including its tagged reply or a continuation request, as text.
pub async fn ask(client: &mut Client, line: &str) -> TestResult<String> {
    let tag = line.split(' ').next().unwrap_or_default().to_owned();
    client.send(format!("{line}\r\n").as_bytes()).await?;
    let reply = client.receive(|bytes| replies_to(bytes, &tag)).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Connects, reads the greeting and logs in as `user`; returns the client
/// and the LOGIN reply.
pub async fn log_in(service: &Service, user: (&str, &str)) -> TestResult<(Client, String)> {
    let mut client = connect(service, usize::MAX);
    client.receive(greeting).await?;
    let reply = ask(&mut client, &format!("l1 LOGIN {} {}", user.0, user.1)).await?;
    Ok((client, reply))
}

/// Like [`replies`] with [`Until::Tagged`], for a tag known only at run time.
pub fn replies_to(bytes: &[u8], tag: &str) -> TestResult<Option<usize>> {
    let mut offset = 0;
    loop {
        let rest = &bytes[offset..];
        let (remaining, response) = match ResponseCodec::new().decode(rest) {
            Ok(decoded) => decoded,
            Err(ResponseDecodeError::Incomplete | ResponseDecodeError::LiteralFound { .. }) => {
                return Ok(None);
            }
            Err(ResponseDecodeError::Failed) => {
                return Err(format!("invalid response: {}", super::escape(rest)).into());
            }
        };
        offset = bytes.len() - remaining.len();
        let done = match &response {
            Response::Status(Status::Tagged(tagged)) => tagged.tag.inner() == tag,
            Response::CommandContinuationRequest(_) => true,
            _ => false,
        };
        if done {
            return Ok(Some(offset));
        }
    }
}

/// Sends `line` (CRLF is added) as the continuation of the command tagged
/// `tag` and returns the replies up to its tagged reply, as text.
pub async fn continue_with(client: &mut Client, line: &str, tag: &str) -> TestResult<String> {
    client.send(format!("{line}\r\n").as_bytes()).await?;
    let reply = client.receive(|bytes| replies_to(bytes, tag)).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
