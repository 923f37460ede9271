"""The email channel: raw RFC 5322 messages in (webhook, IMAP, mbox/maildir import), MIME out."""
