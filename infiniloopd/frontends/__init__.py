"""Ways in: each frontend translates between its protocol and the core Session."""
