"""Sends COUNT numbered messages to one account over one SMTP connection.

Usage: bulk_send.py SMTP_PORT RECIPIENT COUNT
"""
import smtplib
import sys


def main():
    port, recipient, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for number in range(1, count + 1):
            raw = (
                f"From: bulk@example.org\r\n"
                f"To: {recipient}\r\n"
                f"Subject: bulk message {number}\r\n"
                f"Message-ID: <bulk-{number}@example.org>\r\n"
                f"\r\n"
                f"This is bulk message {number}.\r\n"
            ).encode()
            smtp.sendmail("bulk@example.org", [recipient], raw)


if __name__ == "__main__":
    main()
