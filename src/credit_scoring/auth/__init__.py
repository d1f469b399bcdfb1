"""Who may call the scoring API: bearer-token (JWT) verification and development tokens."""
