"""After sending: SendGrid's signed events, suppression and statistics."""
