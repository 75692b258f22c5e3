"""The email service desk: inbound mail (SMTP listener, HTTP webhook), parsing, threading into
tickets. Drafts, review and sending build on it."""
