"""Drives `mailsim serve` with Python's poplib: log in, STAT, LIST, UIDL,
RETR exact bytes, TOP, DELE applied at QUIT.

Usage: pop3_client.py POP3_PORT SMTP_PORT
"""
import poplib
import smtplib
import sys

HOST = "127.0.0.1"
USER = "bob@demo.test"
PASSWORD = "demo"


def check(condition, message):
    if not condition:
        sys.exit(f"pop3_client: {message}")


def connect(port):
    pop = poplib.POP3(HOST, port)
    pop.user(USER)
    pop.pass_(PASSWORD)
    return pop


def main():
    pop3_port, smtp_port = int(sys.argv[1]), int(sys.argv[2])

    wrong = poplib.POP3(HOST, pop3_port)
    wrong.user(USER)
    try:
        wrong.pass_("wrong-password")
        check(False, "PASS with a wrong password succeeded")
    except poplib.error_proto as error:
        check(b"[AUTH]" in error.args[0], f"unexpected error {error}")
    wrong.quit()

    raw = (
        b"From: sender@example.org\r\n"
        b"To: bob@demo.test\r\n"
        b"Subject: poplib round trip\r\n"
        b"Message-ID: <poplib-1@example.org>\r\n"
        b"\r\n"
        b"first line\r\n"
        b".starts with a dot\r\n"
        b"last line\r\n"
    )
    with smtplib.SMTP(HOST, smtp_port) as smtp:
        smtp.sendmail("sender@example.org", [USER], raw)

    pop = connect(pop3_port)
    count, size = pop.stat()
    check(count >= 1, f"STAT gave {count} {size}")
    listing = pop.list()[1]
    check(len(listing) == count, f"LIST gave {listing} for {count} messages")
    uidls = pop.uidl()[1]
    check(len(uidls) == count, f"UIDL gave {uidls}")

    # The message just sent is the last one.
    lines = pop.retr(count)[1]
    fetched = b"\r\n".join(lines) + b"\r\n"
    check(fetched.endswith(raw), "RETR bytes differ from the sent message")
    top = pop.top(count, 1)[1]
    check(b"Subject: poplib round trip" in top, f"TOP lacks the header: {top}")

    second = poplib.POP3(HOST, pop3_port)
    second.user(USER)
    try:
        second.pass_(PASSWORD)
        check(False, "a second session got the locked maildrop")
    except poplib.error_proto as error:
        check(b"[IN-USE]" in error.args[0], f"unexpected error {error}")
    second.quit()

    pop.dele(count)
    pop.quit()

    pop = connect(pop3_port)
    after, _ = pop.stat()
    check(after == count - 1, f"DELE not applied at QUIT: {after} messages, expected {count - 1}")
    pop.quit()
    print("pop3_client: ok")


if __name__ == "__main__":
    main()
