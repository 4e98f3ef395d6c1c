"""Drives `mailsim serve` with Python's smtplib: EHLO, a delivery to a known
account, and a 550 for an unknown one.

Usage: smtp_client.py SMTP_PORT
"""
import smtplib
import sys

HOST = "127.0.0.1"


def check(condition, message):
    if not condition:
        sys.exit(f"smtp_client: {message}")


def main():
    port = int(sys.argv[1])
    with smtplib.SMTP(HOST, port) as smtp:
        code, _ = smtp.ehlo("client.example")
        check(code == 250, f"EHLO answered {code}")
        refused = smtp.sendmail(
            "sender@example.org",
            ["carol@demo.test"],
            b"Subject: smtplib\r\n\r\nhello\r\n",
        )
        check(refused == {}, f"known recipient refused: {refused}")
        try:
            smtp.sendmail("sender@example.org", ["nobody@demo.test"], b"Subject: x\r\n\r\nx\r\n")
            check(False, "unknown recipient accepted")
        except smtplib.SMTPRecipientsRefused as error:
            code = error.recipients["nobody@demo.test"][0]
            check(code == 550, f"unknown recipient answered {code}")
    print("smtp_client: ok")


if __name__ == "__main__":
    main()
