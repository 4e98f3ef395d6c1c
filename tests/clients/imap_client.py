"""Drives `mailsim serve` with Python's imaplib: log in, list, search, fetch
exact bytes, delete, and send with smtplib then read the message back.

Usage: imap_client.py IMAP_PORT SMTP_PORT
Exits non-zero with a message on the first failed check.
"""
import imaplib
import smtplib
import sys

HOST = "127.0.0.1"
USER = "alice@demo.test"
PASSWORD = "demo"


def check(condition, message):
    if not condition:
        sys.exit(f"imap_client: {message}")


def main():
    imap_port, smtp_port = int(sys.argv[1]), int(sys.argv[2])

    wrong = imaplib.IMAP4(HOST, imap_port)
    try:
        wrong.login(USER, "wrong-password")
        check(False, "login with a wrong password succeeded")
    except imaplib.IMAP4.error as error:
        check(b"AUTHENTICATIONFAILED" in str(error).encode(), f"unexpected error {error}")
    wrong.logout()

    raw = (
        b"From: Test Sender <sender@example.org>\r\n"
        b"To: alice@demo.test\r\n"
        b"Subject: imaplib round trip\r\n"
        b"Message-ID: <imaplib-1@example.org>\r\n"
        b"\r\n"
        b"Line one.\r\n"
        b".Line starting with a dot.\r\n"
    )
    with smtplib.SMTP(HOST, smtp_port) as smtp:
        refused = smtp.sendmail("sender@example.org", [USER], raw)
        check(refused == {}, f"SMTP refused {refused}")

    imap = imaplib.IMAP4(HOST, imap_port)
    check(b"IMAP4REV1" in imap.capability()[1][0].upper(), "CAPABILITY lacks IMAP4rev1")
    imap.login(USER, PASSWORD)

    status, folders = imap.list()
    check(status == "OK" and any(b"INBOX" in f for f in folders), f"LIST gave {folders}")

    status, data = imap.select("INBOX")
    check(status == "OK", f"SELECT failed: {data}")
    exists = int(data[0])

    status, data = imap.search(None, "ALL")
    check(len(data[0].split()) == exists, f"SEARCH ALL gave {data} for {exists} messages")

    status, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", "<imaplib-1@example.org>")
    uids = data[0].split()
    check(len(uids) == 1, f"SEARCH HEADER Message-ID gave {data}")
    uid = uids[0]

    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    fetched = data[0][1]
    check(fetched.endswith(raw), "fetched bytes differ from the sent message")
    check(fetched.startswith(b"Received: "), "SMTP ingress did not add a Received header")

    status, data = imap.uid("FETCH", uid, "(FLAGS)")
    check(b"\\Seen" not in data[0], f"BODY.PEEK set \\Seen: {data}")

    imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
    imap.expunge()
    status, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", "<imaplib-1@example.org>")
    check(data[0].split() == [], f"message still present after EXPUNGE: {data}")

    imap.logout()
    print("imap_client: ok")


if __name__ == "__main__":
    main()
