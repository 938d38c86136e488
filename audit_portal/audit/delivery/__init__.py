"""Getting a message to a receiver outside: signed webhooks (streams and alerts use them) and the backoff
between attempts."""
