"""Where the service's data live: the database, prediction events, the client feature store,
the access audit trail, and the journal shipper that moves events into the database."""
