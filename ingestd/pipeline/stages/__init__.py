"""One module per stage; each exposes one function taking the message context."""
