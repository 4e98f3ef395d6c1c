//! The mail store: accounts, their folders and the messages in them.
//!
//! Raw message bytes live in a [`Bytes`] inside an `Arc<StoredMessage>`, so a
//! FETCH, a RETR, a COPY or a forwarded copy shares the stored bytes instead
//! of copying them. Each account has its own lock; no lock is ever held
//! across an `.await`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use thiserror::Error;
use tokio::sync::watch;

use crate::policy::{AccountPolicy, Faults, Throttle};
use crate::secret::Secret;

/// The name of the folder every account has and POP3 serves as the maildrop.
pub const INBOX: &str = "INBOX";

/// Separator between levels of a folder name, as sent in LIST responses.
pub const HIERARCHY_DELIMITER: char = '/';

/// Errors from store operations.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StoreError {
    /// An account with this address exists already.
    #[error("account {0} exists already")]
    DuplicateAccount(String),
    /// No account has this address.
    #[error("no account {0}")]
    UnknownAccount(String),
    /// The account has no folder of this name.
    #[error("no folder {0}")]
    UnknownFolder(String),
    /// A folder of this name exists already.
    #[error("folder {0} exists already")]
    DuplicateFolder(String),
    /// A forwarding rule would forward the account's mail back to it.
    #[error("forwarding from {0} would loop back to it; forward to an account without a rule back")]
    ForwardLoop(String),
    /// The folder name is empty or not allowed.
    #[error("invalid folder name {0:?}")]
    InvalidFolderName(String),
}

/// Protocols that count connections separately, as Exchange does for IMAP and POP3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
    /// SMTP submission and relay.
    Smtp,
}

impl Protocol {
    fn index(self) -> usize {
        match self {
            Self::Imap => 0,
            Self::Pop3 => 1,
            Self::Smtp => 2,
        }
    }

    /// The protocol's lowercase name, as used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
            Self::Smtp => "smtp",
        }
    }
}

/// System flags a message can carry (RFC 3501 section 2.3.2), as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SystemFlags(u8);

impl SystemFlags {
    /// `\Seen`
    pub const SEEN: Self = Self(1);
    /// `\Answered`
    pub const ANSWERED: Self = Self(2);
    /// `\Flagged`
    pub const FLAGGED: Self = Self(4);
    /// `\Deleted`
    pub const DELETED: Self = Self(8);
    /// `\Draft`
    pub const DRAFT: Self = Self(16);

    /// Every system flag, in the order FETCH FLAGS lists them.
    pub const ALL: [(Self, &'static str); 5] = [
        (Self::SEEN, "\\Seen"),
        (Self::ANSWERED, "\\Answered"),
        (Self::FLAGGED, "\\Flagged"),
        (Self::DELETED, "\\Deleted"),
        (Self::DRAFT, "\\Draft"),
    ];

    /// True when every flag in `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clears `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The flags of one message: system flags and keywords.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// System flags other than `\Recent`, which is per session.
    pub system: SystemFlags,
    /// Keywords, kept sorted and unique.
    pub keywords: BTreeSet<String>,
}

impl Flags {
    /// Flags with only the given system flags set.
    pub fn with_system(system: SystemFlags) -> Self {
        Self {
            system,
            keywords: BTreeSet::new(),
        }
    }
}

/// Raw message bytes and the metadata set when the message arrived.
#[derive(Debug)]
pub struct StoredMessage {
    /// The RFC 5322 message as received, CRLF line endings included.
    pub raw: Bytes,
    /// The INTERNALDATE: when the message arrived in the store.
    pub internal_date: DateTime<FixedOffset>,
    /// An opaque tag given by the deliverer (the scenario runner uses it to
    /// follow a message through forwarding); forwarded copies keep the tag.
    pub tag: Option<u64>,
}

impl StoredMessage {
    /// A message as delivered, with every bare LF turned into CRLF. IMAP and
    /// POP3 both send messages with CRLF line endings, so storing them that
    /// way gives both the same bytes and the same sizes, as Dovecot does.
    pub fn new(raw: Bytes, internal_date: DateTime<FixedOffset>, tag: Option<u64>) -> Self {
        Self {
            raw: normalize_line_endings(raw),
            internal_date,
            tag,
        }
    }

    /// Size in octets, as RFC822.SIZE and POP3 LIST report it.
    pub fn size(&self) -> usize {
        self.raw.len()
    }
}

/// One message in a folder.
#[derive(Clone, Debug)]
pub struct MailEntry {
    /// The message's UID in its folder.
    pub uid: u32,
    /// Current flags.
    pub flags: Flags,
    /// True until the first session that selects the folder read-write sees it.
    pub recent: bool,
    /// The shared message bytes.
    pub message: Arc<StoredMessage>,
}

/// A folder: UIDVALIDITY, UIDNEXT and messages in UID order.
#[derive(Clone, Debug)]
pub struct Folder {
    uid_validity: u32,
    uid_next: u32,
    messages: Vec<MailEntry>,
}

impl Folder {
    fn new(uid_validity: u32) -> Self {
        Self {
            uid_validity,
            uid_next: 1,
            messages: Vec::new(),
        }
    }

    /// The folder's UIDVALIDITY.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// The UID the next appended message will get.
    pub fn uid_next(&self) -> u32 {
        self.uid_next
    }

    /// Messages in ascending UID order; index + 1 is the sequence number for
    /// a session that has seen every change.
    pub fn messages(&self) -> &[MailEntry] {
        &self.messages
    }

    /// Mutable access to the messages, for flag changes. Callers must keep
    /// UIDs and their order unchanged.
    pub fn messages_mut(&mut self) -> &mut [MailEntry] {
        &mut self.messages
    }

    /// The index of the message with `uid`, if present.
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.messages
            .binary_search_by_key(&uid, |entry| entry.uid)
            .ok()
    }

    /// The message with `uid`, if present.
    pub fn get(&self, uid: u32) -> Option<&MailEntry> {
        self.position(uid).map(|index| &self.messages[index])
    }

    /// Appends a message and returns its UID.
    pub fn append(&mut self, message: Arc<StoredMessage>, flags: Flags) -> u32 {
        let uid = self.uid_next;
        self.uid_next = self.uid_next.saturating_add(1);
        self.messages.push(MailEntry {
            uid,
            flags,
            recent: true,
            message,
        });
        uid
    }

    /// Removes the messages whose UIDs `remove` selects, returning their UIDs
    /// in ascending order.
    pub fn expunge_where(&mut self, mut remove: impl FnMut(&MailEntry) -> bool) -> Vec<u32> {
        let mut removed = Vec::new();
        self.messages.retain(|entry| {
            if remove(entry) {
                removed.push(entry.uid);
                false
            } else {
                true
            }
        });
        removed
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when the folder has no messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Number of messages without `\Seen`.
    pub fn unseen(&self) -> usize {
        self.messages
            .iter()
            .filter(|entry| !entry.flags.system.contains(SystemFlags::SEEN))
            .count()
    }

    /// Number of messages still marked recent.
    pub fn recent(&self) -> usize {
        self.messages.iter().filter(|entry| entry.recent).count()
    }
}

/// An account's folders and subscriptions.
#[derive(Debug)]
pub struct Mailboxes {
    folders: BTreeMap<String, Folder>,
    subscriptions: BTreeSet<String>,
    next_uid_validity: u32,
}

impl Mailboxes {
    fn new(first_uid_validity: u32) -> Self {
        let mut mailboxes = Self {
            folders: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
            next_uid_validity: first_uid_validity.max(1),
        };
        let inbox = mailboxes.fresh_folder();
        mailboxes.folders.insert(INBOX.to_owned(), inbox);
        mailboxes.subscriptions.insert(INBOX.to_owned());
        mailboxes
    }

    fn fresh_folder(&mut self) -> Folder {
        let folder = Folder::new(self.next_uid_validity);
        self.next_uid_validity = self.next_uid_validity.wrapping_add(1).max(1);
        folder
    }

    /// Folder names in sorted order, INBOX included.
    pub fn folder_names(&self) -> impl Iterator<Item = &str> {
        self.folders.keys().map(String::as_str)
    }

    /// Subscribed folder names in sorted order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(String::as_str)
    }

    /// The folder called `name`; INBOX matches in any case (RFC 3501 5.1).
    pub fn folder(&self, name: &str) -> Option<&Folder> {
        self.folders.get(canonical_folder_name(name).as_ref())
    }

    /// Mutable access to the folder called `name`.
    pub fn folder_mut(&mut self, name: &str) -> Option<&mut Folder> {
        self.folders.get_mut(canonical_folder_name(name).as_ref())
    }

    /// The INBOX, which always exists.
    pub fn inbox(&self) -> &Folder {
        self.folders
            .get(INBOX)
            .expect("INBOX is created with the account and cannot be deleted")
    }

    /// Mutable access to the INBOX.
    pub fn inbox_mut(&mut self) -> &mut Folder {
        self.folders
            .get_mut(INBOX)
            .expect("INBOX is created with the account and cannot be deleted")
    }

    /// Creates a folder, and any missing parents, with a fresh UIDVALIDITY.
    pub fn create(&mut self, name: &str) -> Result<(), StoreError> {
        let name = canonical_folder_name(name).into_owned();
        let trimmed = name.trim_end_matches(HIERARCHY_DELIMITER);
        if trimmed.is_empty() || trimmed.split(HIERARCHY_DELIMITER).any(str::is_empty) {
            return Err(StoreError::InvalidFolderName(name));
        }
        if self.folders.contains_key(trimmed) {
            return Err(StoreError::DuplicateFolder(trimmed.to_owned()));
        }
        let mut prefix = String::new();
        for level in trimmed.split(HIERARCHY_DELIMITER) {
            if !prefix.is_empty() {
                prefix.push(HIERARCHY_DELIMITER);
            }
            prefix.push_str(level);
            if !self.folders.contains_key(&prefix) {
                let folder = self.fresh_folder();
                self.folders.insert(prefix.clone(), folder);
            }
        }
        Ok(())
    }

    /// Deletes a folder other than INBOX.
    pub fn delete(&mut self, name: &str) -> Result<(), StoreError> {
        let name = canonical_folder_name(name);
        if name == INBOX {
            return Err(StoreError::InvalidFolderName(name.into_owned()));
        }
        match self.folders.remove(name.as_ref()) {
            Some(_) => {
                self.subscriptions.remove(name.as_ref());
                Ok(())
            }
            None => Err(StoreError::UnknownFolder(name.into_owned())),
        }
    }

    /// Renames a folder. Renaming INBOX moves its messages into a new folder
    /// and leaves INBOX empty (RFC 3501 6.3.5).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), StoreError> {
        let from = canonical_folder_name(from).into_owned();
        let to = canonical_folder_name(to).into_owned();
        if to == INBOX || to.is_empty() {
            return Err(StoreError::InvalidFolderName(to));
        }
        if self.folders.contains_key(&to) {
            return Err(StoreError::DuplicateFolder(to));
        }
        if from == INBOX {
            let fresh = self.fresh_folder();
            let inbox = std::mem::replace(self.inbox_mut(), fresh);
            self.folders.insert(to, inbox);
            return Ok(());
        }
        let folder = self
            .folders
            .remove(&from)
            .ok_or_else(|| StoreError::UnknownFolder(from.clone()))?;
        self.folders.insert(to.clone(), folder);
        if self.subscriptions.remove(&from) {
            self.subscriptions.insert(to);
        }
        Ok(())
    }

    /// Adds `name` to the subscriptions.
    pub fn subscribe(&mut self, name: &str) {
        self.subscriptions
            .insert(canonical_folder_name(name).into_owned());
    }

    /// Removes `name` from the subscriptions.
    pub fn unsubscribe(&mut self, name: &str) {
        self.subscriptions
            .remove(canonical_folder_name(name).as_ref());
    }

    /// Gives the folder a new UIDVALIDITY and renumbers its messages from UID 1,
    /// as a server does after rebuilding its index.
    pub fn reset_uid_validity(&mut self, name: &str) -> Result<u32, StoreError> {
        let uid_validity = self.next_uid_validity;
        self.next_uid_validity = self.next_uid_validity.wrapping_add(1).max(1);
        let folder = self
            .folder_mut(name)
            .ok_or_else(|| StoreError::UnknownFolder(name.to_owned()))?;
        folder.uid_validity = uid_validity;
        for (index, entry) in folder.messages.iter_mut().enumerate() {
            entry.uid = index as u32 + 1;
        }
        folder.uid_next = folder.messages.len() as u32 + 1;
        Ok(uid_validity)
    }
}

/// Returns the stored form of a folder name: INBOX in upper case, the rest as given.
pub fn canonical_folder_name(name: &str) -> std::borrow::Cow<'_, str> {
    let first = name.split(HIERARCHY_DELIMITER).next().unwrap_or(name);
    if first.eq_ignore_ascii_case(INBOX) && first != INBOX {
        let mut fixed = String::with_capacity(name.len());
        fixed.push_str(INBOX);
        fixed.push_str(&name[first.len()..]);
        std::borrow::Cow::Owned(fixed)
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// A mail account: address, password, folders, policy and live counters.
#[derive(Debug)]
pub struct Account {
    address: String,
    password: Secret<String>,
    mailboxes: Mutex<Mailboxes>,
    policy: Mutex<AccountPolicy>,
    throttle: Mutex<Throttle>,
    faults: Mutex<Faults>,
    connections: [AtomicU32; 3],
    pop3_locked: AtomicBool,
    changes: watch::Sender<u64>,
}

impl Account {
    /// The account's address, as configured.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// True when `password` matches.
    pub fn check_password(&self, password: &[u8]) -> bool {
        constant_time_eq(self.password.expose().as_bytes(), password)
    }

    /// Locks and returns the folders.
    pub fn mailboxes(&self) -> MutexGuard<'_, Mailboxes> {
        lock(&self.mailboxes)
    }

    /// Runs `change` on the folders and wakes IDLE sessions afterwards.
    pub fn modify<R>(&self, change: impl FnOnce(&mut Mailboxes) -> R) -> R {
        let result = change(&mut self.mailboxes());
        self.changes.send_modify(|generation| *generation += 1);
        result
    }

    /// A receiver that changes whenever a folder of this account changes.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Locks and returns the throttling policy.
    pub fn policy(&self) -> MutexGuard<'_, AccountPolicy> {
        lock(&self.policy)
    }

    /// Replaces the throttling policy and resets the token buckets to it.
    pub fn set_policy(&self, policy: AccountPolicy) {
        *lock(&self.throttle) = Throttle::new(&policy);
        *lock(&self.policy) = policy;
    }

    /// Locks and returns the token buckets.
    pub fn throttle(&self) -> MutexGuard<'_, Throttle> {
        lock(&self.throttle)
    }

    /// Locks and returns the fault switches and schedule.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Appends a message to INBOX and returns its UID.
    pub fn append_to_inbox(&self, message: Arc<StoredMessage>) -> u32 {
        self.modify(|mailboxes| mailboxes.inbox_mut().append(message, Flags::default()))
    }

    /// Current number of open connections of `protocol` logged in to this account.
    pub fn connections(&self, protocol: Protocol) -> u32 {
        self.connections[protocol.index()].load(Ordering::Relaxed)
    }

    /// Counts one more connection of `protocol` unless `limit` is reached.
    /// The count drops when the returned guard does.
    pub fn try_connect(
        self: &Arc<Self>,
        protocol: Protocol,
        limit: Option<u32>,
    ) -> Option<ConnectionGuard> {
        let counter = &self.connections[protocol.index()];
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if limit.is_some_and(|limit| current >= limit) {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ConnectionGuard {
                        account: Arc::clone(self),
                        protocol,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the exclusive POP3 maildrop lock (RFC 1939 section 8); `None`
    /// when another session holds it.
    pub fn try_lock_maildrop(self: &Arc<Self>) -> Option<MaildropLock> {
        self.pop3_locked
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| MaildropLock {
                account: Arc::clone(self),
            })
    }
}

/// One counted connection; dropping it releases the count.
#[derive(Debug)]
pub struct ConnectionGuard {
    account: Arc<Account>,
    protocol: Protocol,
}

impl ConnectionGuard {
    /// The account the connection is logged in to.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.account.connections[self.protocol.index()].fetch_sub(1, Ordering::AcqRel);
    }
}

/// The exclusive POP3 maildrop lock; dropping it unlocks the maildrop.
#[derive(Debug)]
pub struct MaildropLock {
    account: Arc<Account>,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.account.pop3_locked.store(false, Ordering::Release);
    }
}

/// What an account is created from.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    /// The address, also the login name.
    pub address: String,
    /// The password.
    pub password: Secret<String>,
    /// Throttling policy; unlimited by default.
    pub policy: AccountPolicy,
    /// Extra folders besides INBOX.
    pub folders: Vec<String>,
}

impl AccountSpec {
    /// An unthrottled account with only an INBOX.
    pub fn new(address: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            password: Secret::new(password.into()),
            policy: AccountPolicy::default(),
            folders: Vec::new(),
        }
    }
}

/// Why a login failed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password; the two are not told apart.
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// All accounts of the service, keyed by lowercase address.
#[derive(Debug, Default)]
pub struct Store {
    accounts: RwLock<BTreeMap<String, Arc<Account>>>,
    next_uid_validity: AtomicU32,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            accounts: RwLock::new(BTreeMap::new()),
            next_uid_validity: AtomicU32::new(1),
        }
    }

    /// Adds an account; addresses are unique regardless of case.
    pub fn add_account(&self, spec: AccountSpec) -> Result<Arc<Account>, StoreError> {
        let key = spec.address.to_ascii_lowercase();
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if accounts.contains_key(&key) {
            return Err(StoreError::DuplicateAccount(spec.address));
        }
        // Spread UIDVALIDITY values so that two accounts never share one,
        // which makes a mix-up in a client's sync state visible.
        let first_uid_validity = self.next_uid_validity.fetch_add(1000, Ordering::Relaxed);
        let mut mailboxes = Mailboxes::new(first_uid_validity);
        for folder in &spec.folders {
            mailboxes.create(folder)?;
        }
        let account = Arc::new(Account {
            address: spec.address,
            password: spec.password,
            mailboxes: Mutex::new(mailboxes),
            throttle: Mutex::new(Throttle::new(&spec.policy)),
            policy: Mutex::new(spec.policy),
            faults: Mutex::new(Faults::default()),
            connections: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
            pop3_locked: AtomicBool::new(false),
            changes: watch::Sender::new(0),
        });
        accounts.insert(key, Arc::clone(&account));
        Ok(account)
    }

    /// The account with `address`, in any case.
    pub fn account(&self, address: &str) -> Option<Arc<Account>> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        if let Some(account) = accounts.get(address) {
            return Some(Arc::clone(account));
        }
        accounts.get(&address.to_ascii_lowercase()).cloned()
    }

    /// Every account, sorted by lowercase address.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts.values().cloned().collect()
    }

    /// Checks a user name and password.
    pub fn authenticate(&self, user: &str, password: &[u8]) -> Result<Arc<Account>, AuthError> {
        match self.account(user) {
            Some(account) if account.check_password(password) => Ok(account),
            _ => Err(AuthError::InvalidCredentials),
        }
    }
}

/// Returns `raw` with every LF that lacks a CR before it turned into CRLF;
/// `raw` itself, without a copy, when it has none.
pub fn normalize_line_endings(raw: Bytes) -> Bytes {
    let bare = memchr::memchr_iter(b'\n', &raw).filter(|&lf| lf == 0 || raw[lf - 1] != b'\r');
    let count = bare.count();
    if count == 0 {
        return raw;
    }
    let mut fixed = Vec::with_capacity(raw.len() + count);
    let mut start = 0;
    for lf in memchr::memchr_iter(b'\n', &raw) {
        if lf == 0 || raw[lf - 1] != b'\r' {
            fixed.extend_from_slice(&raw[start..lf]);
            fixed.extend_from_slice(b"\r\n");
            start = lf + 1;
        }
    }
    fixed.extend_from_slice(&raw[start..]);
    Bytes::from(fixed)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding an account lock leaves data that is still
    // consistent (every change is a single assignment or push), so a
    // poisoned lock is recovered instead of failing every later session.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            raw: Bytes::copy_from_slice(text.as_bytes()),
            internal_date: DateTime::UNIX_EPOCH.fixed_offset(),
            tag: None,
        })
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        let fixed = normalize_line_endings(Bytes::from_static(b"A: 1\nB: 2\r\n\nbody\n"));
        assert_eq!(&fixed[..], b"A: 1\r\nB: 2\r\n\r\nbody\r\n");
        let clean = Bytes::from_static(b"A: 1\r\n\r\nbody\r\n");
        assert_eq!(
            normalize_line_endings(clean.clone()).as_ptr(),
            clean.as_ptr()
        );
        assert_eq!(
            &normalize_line_endings(Bytes::from_static(b"\n"))[..],
            b"\r\n"
        );
    }

    #[test]
    fn inbox_name_matches_any_case() {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        let mailboxes = account.mailboxes();
        assert!(mailboxes.folder("inbox").is_some());
        assert!(mailboxes.folder("InBoX").is_some());
        assert!(mailboxes.folder("Archive").is_none());
    }

    #[test]
    fn append_assigns_ascending_uids() {
        let mut folder = Folder::new(7);
        assert_eq!(folder.append(message("a"), Flags::default()), 1);
        assert_eq!(folder.append(message("b"), Flags::default()), 2);
        assert_eq!(folder.uid_next(), 3);
        assert_eq!(folder.position(2), Some(1));
    }

    #[test]
    fn expunge_keeps_uid_next() {
        let mut folder = Folder::new(7);
        folder.append(message("a"), Flags::default());
        folder.append(message("b"), Flags::default());
        let removed = folder.expunge_where(|entry| entry.uid == 1);
        assert_eq!(removed, vec![1]);
        assert_eq!(folder.uid_next(), 3);
        assert_eq!(folder.len(), 1);
    }

    #[test]
    fn uid_validity_reset_renumbers() {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        account.append_to_inbox(message("a"));
        account.append_to_inbox(message("b"));
        account.modify(|m| m.inbox_mut().expunge_where(|entry| entry.uid == 1));
        let before = account.mailboxes().inbox().uid_validity();
        let after = account.modify(|m| m.reset_uid_validity(INBOX)).unwrap();
        assert_ne!(before, after);
        let mailboxes = account.mailboxes();
        assert_eq!(mailboxes.inbox().messages()[0].uid, 1);
        assert_eq!(mailboxes.inbox().uid_next(), 2);
    }

    #[test]
    fn authenticate_checks_password() {
        let store = Store::new();
        store
            .add_account(AccountSpec::new("Alice@Example.com", "pw"))
            .unwrap();
        assert!(store.authenticate("alice@example.com", b"pw").is_ok());
        assert_eq!(
            store
                .authenticate("alice@example.com", b"wrong")
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert!(store.authenticate("bob@example.com", b"pw").is_err());
    }

    #[test]
    fn connection_limit_is_enforced() {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        let first = account.try_connect(Protocol::Imap, Some(1));
        assert!(first.is_some());
        assert!(account.try_connect(Protocol::Imap, Some(1)).is_none());
        assert!(account.try_connect(Protocol::Pop3, Some(1)).is_some());
        drop(first);
        assert!(account.try_connect(Protocol::Imap, Some(1)).is_some());
    }

    #[test]
    fn maildrop_lock_is_exclusive() {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        let lock = account.try_lock_maildrop();
        assert!(lock.is_some());
        assert!(account.try_lock_maildrop().is_none());
        drop(lock);
        assert!(account.try_lock_maildrop().is_some());
    }
}
